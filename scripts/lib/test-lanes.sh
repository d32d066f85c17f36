# Sourced by scripts/test.sh: run every test target, the lab tests in lanes at once (two here:
# tests/lanes/slot1 and the rest).
#
# Each lane is its own lab slot (DIRECTOR_BOOT_LAB_SLOT: bridge dblabN, 10.213.N.0/24, see
# README "The lab"), so labs run side by side; inside a lane tests run one at a time. Lane N
# (N >= 1) takes only the tests listed in tests/lanes/slotN (tests that reach nodes through
# tests/common's address helpers, never a literal 10.213.0.x); every other target runs in lane
# 0 (slot 0), so a new test is never left out. DIRECTOR_BOOT_TEST_SLOTN moves lane N to another
# slot (when that slot is busy on a shared machine). tests/lab.rs runs first, alone: on a cold
# machine it builds the lab's base root filesystem that both lanes then share.
#
# The test binaries are run directly (cargo would hold the build-dir lock for the whole run and
# serialise the lanes); each from the package root, as `cargo test` does.

# test_targets: "kind name executable" per test target (built on the way).
test_targets() {
  cargo test --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"])
'
}

# run_lane SLOT NAME... : run the named targets' binaries in lab slot SLOT, one after the
# other; prints a result line per target and returns non-zero if any failed.
run_lane() {
  # A failing test must not end the lane (test.sh runs under set -e): options local to here.
  local -
  set +e
  local slot=$1 failed=0 name start rc
  shift
  for name in "$@"; do
    start=$SECONDS
    # The slot prefix keeps the two lanes' interleaved output apart.
    DIRECTOR_BOOT_LAB_SLOT=$slot "${TARGET_EXE[$name]}" --test-threads=1 2>&1 |
      sed -u "s/^/[slot$slot $name] /"
    rc=${PIPESTATUS[0]}
    echo "lane $slot: $name $([ "$rc" = 0 ] && echo ok || echo FAILED) in $((SECONDS - start)) s" |
      tee -a "$LANE_SUMMARY"
    [ "$rc" = 0 ] || failed=1
  done
  return $failed
}

run_test_lanes() {
  declare -gA TARGET_EXE=()
  local kind name exe lane file ok=0 pids=()
  cargo test --no-run
  while read -r kind name exe; do
    TARGET_EXE[$name]=$exe
  done < <(test_targets)
  # LISTED[lane] = the targets tests/lanes/slotN lists, in its order; lane 0 takes the rest.
  declare -A LISTED=()
  local lanes=(0) listed=""
  for file in tests/lanes/slot*; do
    lane=${file##*/slot}
    lanes+=("$lane")
    LISTED[$lane]=$(grep -v '^#' "$file" | grep .)
    listed+=${LISTED[$lane]}$'\n'
  done
  LANE_SUMMARY=$(mktemp)
  local began=$SECONDS
  run_lane 0 lab || ok=1
  for lane in "${lanes[@]}"; do
    local members=()
    if [ "$lane" = 0 ]; then
      for name in "${!TARGET_EXE[@]}"; do
        [ "$name" = lab ] || grep -qx "$name" <<<"$listed" || members+=("$name")
      done
      # Sorted: the same order every run.
      mapfile -t members < <(printf '%s\n' "${members[@]}" | sort)
    else
      # In the file's order, which keeps the big app labs of different lanes apart in time.
      mapfile -t members <<<"${LISTED[$lane]}"
    fi
    local slot_var=DIRECTOR_BOOT_TEST_SLOT$lane
    run_lane "${!slot_var:-$lane}" "${members[@]}" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || ok=1; done
  echo "== test targets ($((SECONDS - began)) s in all) =="
  cat "$LANE_SUMMARY"
  rm -f "$LANE_SUMMARY"
  return $ok
}
