#!/usr/bin/env bash
# The README's two commands, each on a bare Debian 12 machine: a fresh
# `debootstrap --variant=minbase bookworm` chroot per command, as root, with
# this checkout (its committed files) copied into /root, and ../shared
# beside it.  Each command runs first on its machine, as it would for a
# newcomer who starts with either.
#
#   bash scripts/fresh-machine.sh            # both commands
#   bash scripts/fresh-machine.sh demo       # bash scripts/demo.sh only
#   bash scripts/fresh-machine.sh test       # bash test/run.sh only
#
# Needs root, and Debian's mirror (DISTILL_MIRROR, default deb.debian.org).
# Prints "ok: ..." or "FAIL: ..." per command and exits non-zero on a failure.
set -u
cd "$(dirname "$0")/.."
MIRROR=${DISTILL_MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d /var/tmp/distill-fresh.XXXXXX)
BASE=$WORK/bookworm-minbase.tgz
declare -A COMMANDS=([demo]="bash scripts/demo.sh" [test]="bash test/run.sh")
status=0

[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap and chroot need it)" >&2; exit 2; }
command -v debootstrap >/dev/null ||
	{ apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; } || exit 2

mounts() { grep -o " $1/[^ ]*" /proc/mounts | sort -r; }

cleanup() {
	local root
	for root in "$WORK"/*/; do
		for m in $(mounts "${root%/}"); do umount -l "$m"; done
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

# A new machine from the base tarball, with this checkout in /root/distill.
new_machine() {
	local root=$WORK/$1
	mkdir -p "$root"
	debootstrap --variant=minbase --unpack-tarball="$BASE" bookworm "$root" "$MIRROR" >/dev/null || return 1
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	mount -t proc proc "$root/proc"
	mount --rbind /dev "$root/dev"
	mount -t tmpfs tmpfs "$root/dev/shm"
	mount -t sysfs sysfs "$root/sys"
	# as in any chroot: packages must not start services (PostgreSQL's
	# "main" cluster) that would outlive it
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/root/distill"
	git archive HEAD | tar -x -C "$root/root/distill"
	# the project's data and models, next to the clone as on CI's machine
	[ -d ../shared ] && cp -r ../shared "$root/root/shared"
	return 0
}

# Run one of the commands on a new machine, its output also in $WORK/<name>.log.
run_on_new_machine() (
	set -o pipefail
	new_machine "$1" &&
		chroot "$WORK/$1" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			/bin/bash -c "cd /root/distill && ${COMMANDS[$1]}" 2>&1 | tee "$WORK/$1.log"
)

echo "== downloading a minimal Debian 12 (once)"
debootstrap --variant=minbase --make-tarball="$BASE" bookworm "$WORK/download" "$MIRROR" >/dev/null ||
	{ echo "FAIL: debootstrap could not fetch bookworm from $MIRROR"; exit 1; }
rm -rf "$WORK/download"

for name in ${1:-demo test}; do
	echo "== ${COMMANDS[$name]}, on a bare machine"
	if run_on_new_machine "$name"; then
		echo "ok: ${COMMANDS[$name]} on a bare Debian 12"
	else
		echo "FAIL: ${COMMANDS[$name]} on a bare Debian 12"
		status=1
	fi
done
exit $status
