# Sourced by scripts that talk to lab addresses (10.213.N.0/24, N the lab slot). When the lab is down, the host
# routes those addresses to its default gateway, so traffic aimed at them would leave this
# machine: check that the lab bridge is up and that a lab address routes through it, every time
# before contacting the lab (a step may have torn it down). See tests/common/mod.rs.
# DIRECTOR_BOOT_LAB_SLOT=N: the independent lab of slot N (bridge dblabN, 10.213.N.0/24).
LAB_SLOT=${DIRECTOR_BOOT_LAB_SLOT:-0}
LAB_BRIDGE=dblab$LAB_SLOT
LAB_NET=10.213.$LAB_SLOT
require_lab_bridge() {
  local link route
  link=$(ip -o link show "$LAB_BRIDGE" 2>/dev/null) || {
    echo "not contacting the lab: the lab bridge $LAB_BRIDGE does not exist" >&2; exit 1; }
  [[ $link =~ \<([^>]*)\> && ,${BASH_REMATCH[1]}, == *,UP,* ]] || {
    echo "not contacting the lab: the lab bridge $LAB_BRIDGE is not up" >&2; exit 1; }
  route=$(ip route get "$LAB_NET.11" 2>/dev/null)
  [[ $route == *"dev $LAB_BRIDGE"* && $route != *" via "* ]] || {
    echo "not contacting the lab: $LAB_NET.11 does not route through $LAB_BRIDGE ($route)" >&2; exit 1; }
}
