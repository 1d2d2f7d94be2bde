#!/bin/sh
# Installs this tarball's program on a host that is not Debian (on Debian use
# the .deb): the files under files/ below ROOT (default /), the system group
# and user, and the configuration's owner and mode, as the Debian package does.
# An existing configuration is kept (the new example goes beside it as .new).
# The service is NOT enabled or started: see the README that comes with it.
#
#   sudo ./install.sh              # install below /
#   ./install.sh --root /tmp/x     # install into a staging root (no users made)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=/
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
name=$(ls "$here/files/usr/bin")
case "$name" in
  promos-licd) group=promos; user= ;;
  pls) group=pls; user=pls ;;
  *) echo "install.sh: unknown program $name" >&2; exit 1 ;;
esac
root=${root%/}
conf=$root/etc/$name/$name.toml

install -d "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/$name" "$root/usr/share/doc/$name"
install -m 0755 "$here/files/usr/bin/$name" "$root/usr/bin/$name"
install -m 0644 "$here/files/lib/systemd/system/$name.service" "$root/lib/systemd/system/$name.service"
for doc in "$here"/files/usr/share/doc/"$name"/*; do
  install -m 0644 "$doc" "$root/usr/share/doc/$name/"
done
if [ -e "$conf" ]; then
  install -m 0640 "$here/files/etc/$name/$name.toml" "$conf.new"
  echo "kept $conf; the new example is $conf.new" >&2
else
  install -m 0640 "$here/files/etc/$name/$name.toml" "$conf"
fi

if [ -z "$root" ]; then
  # The live system: the group (and user) the service runs with.
  getent group "$group" >/dev/null || groupadd --system "$group"
  if [ -n "$user" ] && ! getent passwd "$user" >/dev/null; then
    useradd --system --gid "$group" --home-dir "/var/lib/$name" --no-create-home \
      --shell /usr/sbin/nologin "$user"
  fi
  if [ -n "$user" ]; then
    install -d -o "$user" -g "$group" -m 0700 "/var/lib/$name"
  fi
  chown "root:$group" "$conf"
  command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] && systemctl daemon-reload || true
  echo "$name installed; not enabled or started (see /usr/share/doc/$name/README.md)" >&2
else
  echo "$name installed below $root; on the target create the system group '$group'${user:+ and user '$user'}" >&2
fi
