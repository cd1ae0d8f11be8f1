package cri

// imageService is what the ImageService handlers need from
// internal/imagesvc. It is declared here, where it is used.
type imageService interface{}
