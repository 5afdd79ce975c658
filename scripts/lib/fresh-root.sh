# shellcheck shell=bash disable=SC2034,SC2154
# Minimal Debian 12 roots for scripts/fresh-check and scripts/package-check
# (sourced, not run; bash, under `set -euo pipefail`). Makes roots with
# debootstrap from the Debian mirror in this machine's apt sources, mounts
# into them what builds and package scripts need, and takes everything
# down again at exit, also on failure or Ctrl-C: every process still
# running in a root is killed by its PID, every mount is unmounted, every
# root removed (kept with keep=1).
#
# The caller sets `tag` (its name, for messages) and `keep` (0 or 1) and
# defines log() (hence the shellcheck line: it reads tag and keep and sets
# root_env for the caller); then:
#   fresh_root_mirror                  sources=("URI SUITE"...), main_mirror
#   fresh_root_need_debootstrap
#   root=$(mktemp -d ...); fresh_root_add "$root"; fresh_root_traps
#   fresh_root_debootstrap "$root"     minbase, apt sources and settings
#   fresh_root_mount "$root"           /proc, /sys, /dev/pts, /dev/shm
#   chroot "$root" "${root_env[@]}" CMD...
#
# The only things taken from the host are the mirror, how it reaches it
# (apt's Acquire settings) and /etc/resolv.conf, never a package.

fresh_roots=()
fresh_mounts=()

# a clean environment for commands inside a root
root_env=(/usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  DEBIAN_FRONTEND=noninteractive)

# Prints "URI SUITE" for each Debian bookworm source (one-line and deb822).
debian_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                       if ($(i+1) ~ /^bookworm/) print $i, $(i+1) }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
         { uris = ""; suites = ""; types = ""
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^URIs:/)   { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
             if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
             if ($i ~ /^Types:/)  { types = $i }
           }
           if (types !~ /deb( |$)/) next
           n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
           for (a = 1; a <= n; a++) for (b = 1; b <= m; b++)
             if (s[b] ~ /^bookworm/) print u[a], s[b] }' "$f"
  done
}

# Sets sources ("URI SUITE" lines) and main_mirror (the URI of the plain
# bookworm suite) from this machine's apt sources; exits 1 without one.
fresh_root_mirror() {
  local s
  mapfile -t sources < <(debian_sources | sort -u)
  main_mirror=""
  for s in "${sources[@]}"; do
    [ "${s#* }" = bookworm ] && { main_mirror=${s% *}; break; }
  done
  if [ -z "$main_mirror" ]; then
    echo "$tag: no 'bookworm' source in this machine's apt sources" >&2
    exit 1
  fi
}

fresh_root_need_debootstrap() {
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
}

# Registers a root (an empty folder made by the caller) for the clean-up.
fresh_root_add() {
  fresh_roots+=("$1")
}

# The EXIT trap: kills what runs in the roots, unmounts, removes the roots;
# exits with the status the script was ending with.
fresh_root_cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  [ $status -eq 0 ] || log "ending with status $status"
  set +e
  local r pid pids i
  # every process still running inside a root, by PID
  for r in "${fresh_roots[@]}"; do
    pids=()
    for pid in /proc/[0-9]*; do
      [ "$(readlink "$pid/root" 2>/dev/null)" = "$r" ] && pids+=("${pid#/proc/}")
    done
    if [ ${#pids[@]} -gt 0 ]; then
      log "stopping ${#pids[@]} processes left in the root"
      kill -9 "${pids[@]}" 2>/dev/null
      sleep 1
    fi
  done
  for ((i = ${#fresh_mounts[@]} - 1; i >= 0; i--)); do
    umount "${fresh_mounts[i]}" 2>/dev/null || umount -l "${fresh_mounts[i]}"
  done
  for r in "${fresh_roots[@]}"; do
    if findmnt -rn -o TARGET | grep -q "^$r"; then
      echo "$tag: something is still mounted under $r; not removing it" >&2
    elif [ "$keep" -eq 1 ]; then
      log "kept the root in $r"
    else
      rm -rf --one-file-system "$r"
    fi
  done
  exit $status
}

fresh_root_traps() {
  trap fresh_root_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# fresh_root_debootstrap ROOT: a minbase bookworm in ROOT, whose apt has the
# same Debian sources as this machine and its Acquire settings, and where
# no package script starts a service (policy-rc.d). Exits 1 on failure.
fresh_root_debootstrap() {
  local root=$1 s f
  log "debootstrap bookworm (minbase) from $main_mirror into $root"
  if ! debootstrap --variant=minbase bookworm "$root" "$main_mirror" >"$root.debootstrap.log" 2>&1; then
    tail -n 20 "$root.debootstrap.log" >&2
    rm -f "$root.debootstrap.log"
    echo "$tag: debootstrap failed" >&2
    exit 1
  fi
  rm -f "$root.debootstrap.log"

  : >"$root/etc/apt/sources.list"
  for s in "${sources[@]}"; do
    echo "deb ${s% *} ${s#* } main" >>"$root/etc/apt/sources.list"
  done
  for f in /etc/apt/apt.conf.d/*; do
    grep -q '^[[:space:]]*Acquire::' "$f" 2>/dev/null && cp "$f" "$root/etc/apt/apt.conf.d/"
  done
  # no service starts from package scripts (nginx, redis) inside the root
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
}

# mount_in ROOT TYPE SOURCE TARGET [OPTIONS]
mount_in() {
  mkdir -p "$1$4"
  mount -t "$2" ${5:+-o "$5"} "$3" "$1$4"
  fresh_mounts+=("$1$4")
}

# fresh_root_mount ROOT: /proc, /sys, /dev/pts and /dev/shm, as a build
# and the tests need them; the network is the host's (loopback included).
fresh_root_mount() {
  local root=$1
  mount_in "$root" proc proc /proc
  mount_in "$root" sysfs sysfs /sys
  mount_in "$root" devpts devpts /dev/pts newinstance,ptmxmode=0666
  mount_in "$root" tmpfs tmpfs /dev/shm mode=1777
  [ -e "$root/dev/ptmx" ] || ln -s pts/ptmx "$root/dev/ptmx"
}
