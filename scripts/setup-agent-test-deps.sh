#!/usr/bin/env bash
# Install the Debian packages the endpoint agent's real tests need: an X server (Xvfb), a window
# manager that sets _NET_ACTIVE_WINDOW (openbox), xdotool to switch focus and move the mouse,
# xterm as a focusable client, x11-utils (xprop), systemd for `systemd-analyze verify` on the
# shipped unit, desktop-file-utils to validate the XDG autostart entry, and dbus-daemon for a
# private bus on which the logind tests run a fake org.freedesktop.login1 (never the system bus).
# The removable-media tests make an ext4 "stick" (e2fsprogs) on a loop device (losetup, mount:
# package mount) and read its label with blkid (util-linux); they and the app-blocking tests run
# as root. libnotify-bin (notify-send) is optional: without it the session helper logs the message.
# The USB control tests run Debian's usbguard-daemon with its umockdev backend on simulated
# devices (usbguard, umockdev), with their own config in a temporary directory, as root. On a
# machine that boots with systemd, installing usbguard also enables usbguard.service with
# Debian's default policy: install it on test machines, not on a workstation you type on.
# The browser tests run Debian's chromium headless with the extension from browser-extension/.
# Nothing is downloaded from outside Debian.
# Exit 0: everything is there. Exit 3: something is missing and this user cannot install it.
set -euo pipefail

# command -> Debian package that provides it
declare -A needs=(
  [Xvfb]=xvfb
  [openbox]=openbox
  [xdotool]=xdotool
  [xterm]=xterm
  [xprop]=x11-utils
  [systemd-analyze]=systemd
  [desktop-file-validate]=desktop-file-utils
  [dbus-daemon]=dbus-daemon
  [mkfs.ext4]=e2fsprogs
  [losetup]=mount
  [blkid]=util-linux
  [usbguard]=usbguard
  [usbguard-daemon]=usbguard
  [usbguard-rule-parser]=usbguard
  [umockdev-wrapper]=umockdev
  [chromium]=chromium
)

missing=()
for cmd in "${!needs[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    missing+=("${needs[$cmd]}")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing for the agent tests: ${missing[*]} (run 'apt-get install ${missing[*]}' as root)" >&2
  exit 3
fi

echo "Installing Debian packages for the agent tests: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps systemd from pulling in a desktop's worth of extras.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "still missing after install: $cmd" >&2; exit 1; }
done
