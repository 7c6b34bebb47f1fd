#!/bin/sh
# install-code-server.sh VERSION DIR: code-server VERSION from the npm registry into DIR (which
# must exist and be empty), with its native modules built here and nothing downloaded from
# elsewhere. Run as an ordinary user with node, npm (npm_config_nodedir for node's headers)
# and the compilers on PATH (images/vscode/Dockerfile's build stage).
#
# It does what code-server's own postinstall.sh does (install lib/vscode's and its extensions'
# dependencies, link two helper scripts), with one change: @vscode/ripgrep's install script
# downloads a ripgrep binary from GitHub, which these machines cannot reach, so its bin/rg is
# Debian's ripgrep (a symlink to /usr/bin/rg, installed in the final image) and the script,
# finding bin/, does nothing.
set -eux
version=$1
dir=$2

cd /tmp
npm pack --silent "code-server@${version}"
tar -xzf "code-server-${version}.tgz" -C "$dir" --strip-components=1
rm -f "code-server-${version}.tgz"

cd "$dir"
npm pkg delete scripts.postinstall # its steps follow, without the download
npm install --omit=dev --ignore-scripts
npm rebuild

cd lib/vscode
npm install --omit=dev --ignore-scripts
mkdir -p node_modules/@vscode/ripgrep/bin
ln -s /usr/bin/rg node_modules/@vscode/ripgrep/bin/rg
npm rebuild
ln -sf code-linux.sh bin/remote-cli/code-server
ln -sf browser-linux.sh bin/helpers/browser.sh

cd extensions
npm install --omit=dev

cd "$dir"
mkdir -p bin
ln -s ../out/node/entry.js bin/code-server
