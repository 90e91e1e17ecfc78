# tesp_cat: INPUT OUTPUT PROBE -- copy INPUT to OUTPUT, then say whether a file named PROBE
# next to INPUT can be seen (under TESP's bwrap runtime with staging only staged files can).
set -eu
cat "$1" > "$2"
if [ -e "$(dirname "$1")/$3" ]; then seen=visible; else seen=hidden; fi
echo "probe $3: $seen" >> "$2"
echo "tool script ran from $(basename "$(dirname "$0")")"
