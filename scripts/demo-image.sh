#!/usr/bin/env bash
# Builds the demo image offline: an OCI image archive (a tar of an OCI layout) holding Debian's
# statically linked busybox with its applet links, Cmd ["sh"], tagged 1.35.
#
#   scripts/demo-image.sh OUT.tar        then   podway image import OUT.tar --name busybox:1.35
#
# Needs umoci and busybox-static (Debian packages); runs as root.
set -euo pipefail
out=${1:?usage: demo-image.sh OUT.tar}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "demo-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
command -v umoci >/dev/null || { echo "demo-image: umoci missing (apt-get install umoci)" >&2; exit 1; }
linkage=$(ldd "$busybox" 2>&1 || true)
[[ $linkage == *"not a dynamic"* ]] || { echo "demo-image: $busybox is not statically linked (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layout=$work/layout
umoci init --layout "$layout"
umoci new --image "$layout:1.35"
umoci unpack --image "$layout:1.35" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/www}
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
# One link per applet, where busybox itself would install it.
"$busybox" --list-full | while read -r applet; do
  [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
echo 'hello from podway' > "$rootfs/var/www/index.html"
umoci repack --image "$layout:1.35" "$work/bundle" >/dev/null
umoci config --image "$layout:1.35" --config.cmd sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin >/dev/null
umoci gc --layout "$layout"
tar -C "$layout" -cf "$out" .
echo "demo image written to $out ($(du -h "$out" | cut -f1))"
