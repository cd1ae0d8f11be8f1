package testimages

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The account databases of the official busybox image, which every
// upstream critest image (busybox-based) inherits. Specs depend on:
// nobody (RunAsUsername), www-data (test-image-user-username*), and on
// uid 1000/1001/1002/1003 having NO entry (RunAsUser, image USER specs).
var (
	busyboxPasswd = []string{
		"root:x:0:0:root:/root:/bin/sh",
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false",
		"bin:x:2:2:bin:/bin:/bin/false",
		"sys:x:3:3:sys:/dev:/bin/false",
		"sync:x:4:100:sync:/bin:/bin/sync",
		"mail:x:8:8:mail:/var/spool/mail:/bin/false",
		"www-data:x:33:33:www-data:/var/www:/bin/false",
		"operator:x:37:37:Operator:/var:/bin/false",
		"nobody:x:65534:65534:nobody:/home:/bin/false",
	}
	busyboxGroup = []string{
		"root:x:0:", "daemon:x:1:", "bin:x:2:", "sys:x:3:", "adm:x:4:", "tty:x:5:",
		"disk:x:6:", "lp:x:7:", "mail:x:8:", "kmem:x:9:", "wheel:x:10:root",
		"cdrom:x:11:", "dialout:x:18:", "floppy:x:19:", "video:x:28:", "audio:x:29:",
		"tape:x:32:", "www-data:x:33:", "operator:x:37:", "utmp:x:43:", "plugdev:x:46:",
		"staff:x:50:", "lock:x:54:", "netdev:x:82:", "users:x:100:", "nogroup:x:65534:",
	}
)

// busyboxTree is the root filesystem of the busybox image: the binary, one
// symlink per applet in /bin (the official image puts them all there), the
// account databases and the usual empty directories. /proc, /sys and /dev
// contents are left to the runtime, as in the real image.
func busyboxTree(busybox []byte, applets []string) *tree {
	t := newTree().
		file("bin/busybox", 0o755, busybox).
		file("etc/passwd", 0o644, concat(busyboxPasswd...)).
		file("etc/group", 0o644, concat(busyboxGroup...)).
		dir("dev", 0o755).
		dir("home", 0o755).
		dir("root", 0o700).
		dir("tmp", 0o1777).
		dir("usr/sbin", 0o755).
		dir("var/spool/mail", 0o755).
		dir("var/www", 0o755)
	// Hard links, as in the official busybox image: masking one applet
	// path (critest masks /bin/ls) must not mask the shell with it, which
	// a symlink to /bin/busybox would.
	for _, a := range applets {
		t.hardlink("bin/"+a, "bin/busybox")
	}
	return t
}

// predefinedGroupTree is what `adduser -u 1000 -D default-user && addgroup
// -g 50000 group-defined-in-image && addgroup default-user
// group-defined-in-image` changes in the busybox image.
func predefinedGroupTree() *tree {
	passwd := append(append([]string{}, busyboxPasswd...),
		"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh")
	group := append(append([]string{}, busyboxGroup...),
		"default-user:x:1000:",
		"group-defined-in-image:x:50000:default-user")
	return newTree().
		file("etc/passwd", 0o644, concat(passwd...)).
		file("etc/group", 0o644, concat(group...)).
		ownedDir("home/default-user", 0o755, 1000, 1000)
}

// nginxConfig mirrors the nginx image config; hostnet-nginx is built from a
// newer nginx whose stop signal is SIGQUIT, which the stand-in also honours.
func nginxConfig(stopSignal string) v1.Config {
	return v1.Config{
		Env:          []string{defaultPath, "NGINX_VERSION=1.14.2"},
		Cmd:          []string{"nginx", "-g", "daemon off;"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
		StopSignal:   stopSignal,
	}
}

// nginxTree installs the nginx stand-in (csrc/nginx.c) with the upstream
// paths: binary, config, document root and pid file directory.
func nginxTree(nginx []byte, port int) *tree {
	return nginxConfTree(port).
		file("usr/sbin/nginx", 0o755, nginx).
		file("usr/share/nginx/html/index.html", 0o644, []byte(welcomePage("nginx"))).
		dir("var/run", 0o755).
		dir("var/log/nginx", 0o755).
		dir("var/cache/nginx", 0o755)
}

// nginxConfTree is the server block; the stand-in reads only "listen".
func nginxConfTree(port int) *tree {
	conf := concat(
		"server {",
		fmt.Sprintf("    listen       %d;", port),
		"    server_name  localhost;",
		"    location / {",
		"        root   /usr/share/nginx/html;",
		"        index  index.html index.htm;",
		"    }",
		"}",
	)
	return newTree().file("etc/nginx/conf.d/default.conf", 0o644, conf)
}

// httpdForeground replaces Apache's httpd-foreground with busybox httpd.
// critest waits for "httpd" in the container log, which Apache prints in its
// startup warning; the banner line stands in for that.
var httpdForeground = strings.Join([]string{
	"#!/bin/sh",
	"# noded test image: busybox httpd standing in for Apache httpd.",
	"set -e",
	`echo "httpd (busybox) serving /usr/local/apache2/htdocs on port 80" >&2`,
	"exec httpd -f -p 80 -h /usr/local/apache2/htdocs",
	"",
}, "\n")

func httpdTree() *tree {
	return newTree().
		file("usr/local/bin/httpd-foreground", 0o755, []byte(httpdForeground)).
		file("usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n")).
		dir("usr/local/apache2/logs", 0o755)
}

func welcomePage(server string) string {
	return fmt.Sprintf("<!DOCTYPE html>\n<html><head><title>Welcome to %[1]s!</title></head>\n"+
		"<body><h1>Welcome to %[1]s!</h1><p>noded offline critest image.</p></body></html>\n", server)
}
