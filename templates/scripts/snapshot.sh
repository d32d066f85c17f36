# director-boot snapshot: sha256 and mode of files, mode of directories, state of units, in
# one round trip and a fixed number of processes. $1 $2 $3: newline-separated files,
# directories, units. Prints `F sha mode path`, `D mode path`, `U 0|1 unit`.
# A file's sha256 is remembered with its size, mtime and inode (an upload renames a new file
# into place, so the inode changes on every write): unchanged files are not read again.
files=$1 dirs=$2 units=$3
state=/var/lib/director-boot
cache=$state/sha256.cache
mkdir -p "$state" && touch "$cache" || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$files" | while IFS= read -r p; do [ -f "$p" ] && printf '%s\n' "$p"; done > "$tmp/existing"
if [ -s "$tmp/existing" ]; then
  tr '\n' '\0' < "$tmp/existing" | xargs -0 stat -c '%s %Y %i %a %n' > "$tmp/stat" || exit 1
  # Known: print F lines. Unknown or changed: list for hashing.
  awk -v hits="$tmp/hits" -v misses="$tmp/misses" '
    FILENAME == ARGV[1] { p = substr($0, index($0, $5)); known[p] = $1 " " $2 " " $3; sum[p] = $4; next }
    { p = substr($0, index($0, $5)); key = $1 " " $2 " " $3; mode[p] = $4
      if (known[p] == key) print "F " sum[p] " " $4 " " p > hits; else print p > misses }
  ' "$cache" "$tmp/stat" || exit 1
  : >> "$tmp/hits"
  cat "$tmp/hits"
  if [ -s "$tmp/misses" ]; then
    tr '\n' '\0' < "$tmp/misses" | xargs -0 sha256sum > "$tmp/sums" || exit 1
    # F lines for the newly hashed files, and a cache with their fresh entries.
    awk -v out="$tmp/cache" '
      FILENAME == ARGV[1] { p = substr($0, index($0, $5)); st[p] = $1 " " $2 " " $3; mode[p] = $4; next }
      FILENAME == ARGV[2] { p = substr($0, 67); print "F " $1 " " mode[p] " " p; fresh[p] = st[p] " " $1; next }
      { p = substr($0, index($0, $5)); if (!(p in fresh)) print > out }
      END { for (p in fresh) print fresh[p] " " p > out }
    ' "$tmp/stat" "$tmp/sums" "$cache" || exit 1
    mv -f "$tmp/cache" "$cache" || exit 1
  fi
fi
printf '%s\n' "$dirs" | while IFS= read -r d; do [ -d "$d" ] && printf '%s\n' "$d"; done > "$tmp/dirs"
[ -s "$tmp/dirs" ] && tr '\n' '\0' < "$tmp/dirs" | xargs -0 stat -c 'D %a %n'
if [ -n "$units" ]; then
  # One systemctl call; blocks come back in the order asked.
  printf '%s\n' "$units" | tr '\n' '\0' | xargs -0 systemctl show -p UnitFileState -p ActiveState -- 2>/dev/null |
    awk -v names="$units" 'BEGIN { n = split(names, u, "\n"); i = 1 }
      /^ActiveState=/ { a = substr($0, 13) } /^UnitFileState=/ { f = substr($0, 15) }
      /^$/ { if (i <= n) print "U " ((a == "active" && (f == "enabled" || f == "static")) ? 1 : 0) " " u[i]; i++; a = ""; f = "" }
      END { if (i <= n) print "U " ((a == "active" && (f == "enabled" || f == "static")) ? 1 : 0) " " u[i] }'
fi
true
