#!/bin/bash
# nagios_fixture.sh - throwaway, self-contained Nagios Core 4.4.6 (Debian nagios4-core)
# test fixture: PROBLEM/RECOVERY notifications + ACKs through the external command FIFO.
#
#   nagios_fixture.sh DIR               install nagios4-core if missing, write config into DIR,
#                                       start "nagios4 -d", print the daemon PID on stdout
#   nagios_fixture.sh DIR svc-state N   exit code of fixture-host/fixture-svc (0 OK 1 WARN 2 CRIT 3 UNKN)
#   nagios_fixture.sh DIR host-state N  exit code of fixture-host2 (0 UP, 2 DOWN; 1 counts as UP!)
#   nagios_fixture.sh DIR wait-notify TYPE [HOST] [SVC|-] [TIMEOUT]   print first matching
#                                       DIR/notify.log record (SVC "-" = host notification)
#   nagios_fixture.sh DIR ack-svc [HOST] [SVC]  /  ack-host [HOST]   write ACK to DIR/nagios.cmd
#   nagios_fixture.sh DIR wait-ack svc|host [HOST] [SVC] [TIMEOUT]   poll status.dat for ack=1
#   nagios_fixture.sh DIR ack-flow svc|host [TIMEOUT]   wait PROBLEM -> ACK -> verify status.dat
#   nagios_fixture.sh DIR status-field hoststatus|servicestatus HOST SVC FIELD
#   nagios_fixture.sh DIR stop          SIGTERM the daemon by PID, wait for its children
#   nagios_fixture.sh DIR e2e           full cycle with timings (start ... stop)
# Env (start): NF_SVC_NOTIFY_CMD / NF_HOST_NOTIFY_CMD = extra Nagios command_line run on each
#   service/host notification (the bridge under test; $MACROS$ allowed; write a literal ';'
#   as '\;' and a literal '$' as '$$'). NF_INTERVAL = check/retry interval seconds (default 2).
#   NF_NAGIOS_USER = user nagios (and the notification commands) run as when started as root
#   (default nagios; "root" also works in 4.4.6). Non-root callers: nagios runs as the caller.
#   NF_RESOURCE_LINES = extra lines for resource.cfg (e.g. '$USER9$=token').
#   NF_SVC_CHECK_CMD = command_line of fixture-svc's active check instead of DIR/svc.state
#   (a plugin under test; svc-state then has no effect on it).
# Env (ack): NF_ACK_STICKY (2=sticky, default 2) NF_ACK_NOTIFY (0) NF_ACK_PERSISTENT (0)
#   NF_ACK_AUTHOR NF_ACK_COMMENT.
set -euo pipefail

NAGIOS_BIN=/usr/sbin/nagios4
HOST1=fixture-host     # always UP, carries the service
SVC1=fixture-svc
HOST2=fixture-host2    # host whose UP/DOWN state is driven by DIR/host.state

log() { echo "[nagios-fixture $(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ $# -ge 1 ] || { sed -n '2,25p' "$0" >&2; exit 2; }
D=$(readlink -m "$1"); shift
ACTION=${1:-start}; [ $# -gt 0 ] && shift

ensure_installed() {
  [ -x "$NAGIOS_BIN" ] && return 0
  [ "$(id -u)" = 0 ] || die "nagios4-core is not installed and we are not root"
  log "installing nagios4-core"
  # never let the package start the stock /etc/nagios4 daemon
  local prc=/usr/sbin/policy-rc.d added="" rc=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"; added=1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends nagios4-core >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends nagios4-core >&2; } || rc=$?
  [ -n "$added" ] && rm -f "$prc"
  [ "$rc" = 0 ] && [ -x "$NAGIOS_BIN" ] || die "installing nagios4-core failed"
}

write_config() {
  local run_user run_group
  mkdir -p "$D"/{checkresults,tmp,archives}
  if [ "$(id -u)" != 0 ]; then
    run_user=$(id -un)      # drop_privileges() is a no-op for non-root: runs as the caller
  else
    run_user=${NF_NAGIOS_USER:-nagios}
    if [ "$run_user" != root ]; then
      chown "$run_user" "$D"
      if ! runuser -u "$run_user" -- test -x "$D" -a -w "$D"; then
        log "WARNING: user $run_user cannot reach $D (0700 parent dir?) - running nagios as root"
        run_user=root
      fi
    fi
  fi
  run_group=$(id -gn "$run_user")
  rm -f "$D"/{status.dat,notify.log,nagios.log,nagios.cmd,nagios.qh,nagios.lock,retention.dat,objects.cache,objects.precache}
  echo 0 > "$D/svc.state"
  echo 0 > "$D/host.state"

  cat > "$D/check.sh" <<'EOF'
#!/bin/sh
# exit code = content of the state file given as $1
s=$(cat "$1" 2>/dev/null || echo 3)
case "$s" in 0) t=OK;; 1) t=WARNING;; 2) t=CRITICAL;; *) t=UNKNOWN;; esac
echo "FIXTURE $t - forced state $s from $1"
exit "$s"
EOF
  # records one tab-separated key=value line per notification; ENV_* = env macros
  cat > "$D/notify.sh" <<'EOF'
#!/bin/sh
out=$1; shift
line="RECORDED_AT=$(date +%s.%N)"
for kv in "$@" "ENV_NOTIFICATIONTYPE=${NAGIOS_NOTIFICATIONTYPE-}" \
          "ENV_HOSTNAME=${NAGIOS_HOSTNAME-}" "ENV_SERVICEDESC=${NAGIOS_SERVICEDESC-}" \
          "ENV_SERVICEPROBLEMID=${NAGIOS_SERVICEPROBLEMID-}" "ENV_HOSTPROBLEMID=${NAGIOS_HOSTPROBLEMID-}" \
          "ENV_LONGDATETIME=${NAGIOS_LONGDATETIME-}" "ENV_CONTACTPAGER=${NAGIOS_CONTACTPAGER-}"; do
  kv=$(printf '%s' "$kv" | tr '\t\n\r' '   ')
  line="$line	$kv"
done
printf '%s\n' "$line" >> "$out"
EOF
  chmod 755 "$D/check.sh" "$D/notify.sh"

  # NB: service macros are NOT resolved in host notifications (they stay a literal
  # "$SERVICEDESC$", which sh then mangles), so host and service get separate command lines.
  local C='"NOTIFICATIONTYPE=$NOTIFICATIONTYPE$" "HOSTNAME=$HOSTNAME$" "HOSTSTATE=$HOSTSTATE$" "HOSTADDRESS=$HOSTADDRESS$" "LONGDATETIME=$LONGDATETIME$" "TIMET=$TIMET$" "HOSTPROBLEMID=$HOSTPROBLEMID$" "LASTHOSTPROBLEMID=$LASTHOSTPROBLEMID$" "NOTIFICATIONNUMBER=$NOTIFICATIONNUMBER$" "NOTIFICATIONAUTHOR=$NOTIFICATIONAUTHOR$" "NOTIFICATIONCOMMENT=$NOTIFICATIONCOMMENT$" "CONTACTNAME=$CONTACTNAME$" "CONTACTPAGER=$CONTACTPAGER$"'
  local MS="KIND=service $C"' "SERVICEDESC=$SERVICEDESC$" "SERVICESTATE=$SERVICESTATE$" "SERVICEOUTPUT=$SERVICEOUTPUT$" "SERVICEPROBLEMID=$SERVICEPROBLEMID$" "LASTSERVICEPROBLEMID=$LASTSERVICEPROBLEMID$"'
  local MH="KIND=host $C"' "HOSTOUTPUT=$HOSTOUTPUT$"'
  local svc_cmds=nf-record-svc host_cmds=nf-record-host extra=""
  if [ -n "${NF_SVC_NOTIFY_CMD:-}" ]; then
    svc_cmds="nf-record-svc,nf-svc-custom"
    extra+=$'define command {\n  command_name nf-svc-custom\n  command_line '"$NF_SVC_NOTIFY_CMD"$'\n}\n'
  fi
  if [ -n "${NF_HOST_NOTIFY_CMD:-}" ]; then
    host_cmds="nf-record-host,nf-host-custom"
    extra+=$'define command {\n  command_name nf-host-custom\n  command_line '"$NF_HOST_NOTIFY_CMD"$'\n}\n'
  fi
  local svc_check="nf-check!$D/svc.state"
  if [ -n "${NF_SVC_CHECK_CMD:-}" ]; then
    svc_check="nf-svc-check"
    extra+=$'define command {\n  command_name nf-svc-check\n  command_line '"$NF_SVC_CHECK_CMD"$'\n}\n'
  fi
  local iv=${NF_INTERVAL:-2}

  cat > "$D/objects.cfg" <<EOF
define timeperiod {
  timeperiod_name 24x7
  alias           24x7
  sunday 00:00-24:00
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
}
define command {
  command_name nf-check
  command_line $D/check.sh \$ARG1\$
}
define command {
  command_name nf-record-svc
  command_line $D/notify.sh $D/notify.log $MS
}
define command {
  command_name nf-record-host
  command_line $D/notify.sh $D/notify.log $MH
}
$extra
define contact {
  contact_name                  nf-contact
  alias                         fixture contact
  pager                         +15005550006
  host_notifications_enabled    1
  service_notifications_enabled 1
  host_notification_period      24x7
  service_notification_period   24x7
  host_notification_options     d,u,r
  service_notification_options  w,u,c,r
  host_notification_commands    $host_cmds
  service_notification_commands $svc_cmds
}
define host {
  name                   nf-host-tmpl
  register               0
  check_period           24x7
  check_interval         $iv
  retry_interval         $iv
  max_check_attempts     1
  active_checks_enabled  1
  notifications_enabled  1
  notification_period    24x7
  notification_interval  0
  notification_options   d,u,r
  contacts               nf-contact
  flap_detection_enabled 0
}
define host {
  use           nf-host-tmpl
  host_name     $HOST1
  alias         fixture host (always up)
  address       127.0.0.1
  check_command nf-check!$D/host1.state
}
define host {
  use           nf-host-tmpl
  host_name     $HOST2
  alias         fixture host (state from host.state)
  address       127.0.0.2
  check_command nf-check!$D/host.state
}
define service {
  host_name              $HOST1
  service_description    $SVC1
  check_command          $svc_check
  check_period           24x7
  check_interval         $iv
  retry_interval         $iv
  max_check_attempts     1
  active_checks_enabled  1
  notifications_enabled  1
  notification_period    24x7
  notification_interval  0
  notification_options   w,u,c,r
  contacts               nf-contact
  flap_detection_enabled 0
}
EOF
  echo 0 > "$D/host1.state"
  printf '$USER1$=/usr/lib/nagios/plugins\n' > "$D/resource.cfg"
  # Extra resource.cfg lines (e.g. $USER9$=<API token>), as an admin adds them.
  if [ -n "${NF_RESOURCE_LINES:-}" ]; then printf '%s\n' "$NF_RESOURCE_LINES" >> "$D/resource.cfg"; fi

  cat > "$D/nagios.cfg" <<EOF
log_file=$D/nagios.log
cfg_file=$D/objects.cfg
object_cache_file=$D/objects.cache
precached_object_file=$D/objects.precache
resource_file=$D/resource.cfg
status_file=$D/status.dat
status_update_interval=1
nagios_user=$run_user
nagios_group=$run_group
check_external_commands=1
command_file=$D/nagios.cmd
query_socket=$D/nagios.qh
lock_file=$D/nagios.lock
temp_file=$D/nagios.tmp
temp_path=$D/tmp
check_result_path=$D/checkresults
check_result_reaper_frequency=1
cached_host_check_horizon=0
cached_service_check_horizon=0
max_check_result_reaper_time=5
retain_state_information=0
state_retention_file=$D/retention.dat
log_rotation_method=n
log_archive_path=$D/archives
use_syslog=0
log_notifications=1
log_service_retries=1
log_host_retries=1
log_initial_states=1
log_external_commands=1
log_passive_checks=1
interval_length=1
service_inter_check_delay_method=n
host_inter_check_delay_method=n
service_interleave_factor=1
max_service_check_spread=1
max_host_check_spread=1
max_concurrent_checks=0
check_for_updates=0
bare_update_check=0
enable_notifications=1
enable_event_handlers=0
enable_flap_detection=0
execute_service_checks=1
execute_host_checks=1
accept_passive_service_checks=1
accept_passive_host_checks=1
check_service_freshness=0
check_host_freshness=0
enable_environment_macros=1
use_large_installation_tweaks=0
admin_email=root@localhost
admin_pager=root@localhost
debug_level=0
debug_file=$D/nagios.debug
illegal_object_name_chars=\`~!\$%^&*|'"<>?,()=
illegal_macro_output_chars=\`~\$&|'"<>
EOF
  if [ "$(id -u)" = 0 ]; then chown -R "$run_user:$run_group" "$D"; fi
}

read_pid() { cat "$D/nagios.lock" 2>/dev/null | tr -dc 0-9; }

start() {
  ensure_installed
  write_config
  "$NAGIOS_BIN" -v "$D/nagios.cfg" > "$D/verify.out" 2>&1 || { cat "$D/verify.out" >&2; die "config verification failed"; }
  # -d: nagios forks, the parent exits, the daemon writes its PID to lock_file.
  # Started as root it setuid()s to nagios_user itself (drop_privileges()).
  "$NAGIOS_BIN" -d "$D/nagios.cfg" >&2
  local i pid=""
  for i in $(seq 1 100); do
    pid=$(read_pid); [ -n "$pid" ] && [ -p "$D/nagios.cmd" ] && kill -0 "$pid" 2>/dev/null && break
    sleep 0.1
  done
  [ -n "$pid" ] && [ -p "$D/nagios.cmd" ] || { tail -20 "$D/nagios.log" >&2 || true; die "nagios did not come up"; }
  chmod 0666 "$D/nagios.cmd" 2>/dev/null || true  # let any local user submit commands (test only)
  echo "$pid"
}

svc_state()  { echo "${1:?state}" > "$D/svc.state"; }
host_state() { echo "${1:?state}" > "$D/host.state"; }

# wait-notify TYPE [HOST] [SVC|-] [TIMEOUT] -> prints the matching record line
wait_notify() {
  local type=${1:?type} host=${2:-} svc=${3:-} to=${4:-60} end line
  end=$(( $(date +%s) + to ))
  while :; do
    if [ -f "$D/notify.log" ]; then
      line=$(awk -F'\t' -v t="$type" -v h="$host" -v s="$svc" '
        { ok_t=0; ok_h=(h==""); ok_s=(s=="")
          for (i=1;i<=NF;i++) {
            if ($i=="NOTIFICATIONTYPE=" t) ok_t=1
            if (h!="" && $i=="HOSTNAME=" h) ok_h=1
            if (s=="-" && $i=="KIND=host") ok_s=1
            if (s!="" && s!="-" && $i=="SERVICEDESC=" s) ok_s=1 }
          if (ok_t && ok_h && ok_s) { print; exit } }' "$D/notify.log")
      [ -n "$line" ] && { echo "$line"; return 0; }
    fi
    [ "$(date +%s)" -ge "$end" ] && { log "timeout waiting for $type $host $svc"; return 1; }
    sleep 0.2
  done
}

send_cmd() {  # send_cmd 'CMD;args' -> "[now] CMD;args\n" into the FIFO
  [ -p "$D/nagios.cmd" ] || die "$D/nagios.cmd is not a FIFO (nagios not running?)"
  # a FIFO write blocks if nobody reads it: guard with timeout
  timeout 5 sh -c 'printf "[%s] %s\n" "$(date +%s)" "$1" > "$2"' sh "$1" "$D/nagios.cmd" ||
    die "writing to command FIFO failed"
  log "sent: $1"
}
ack_svc() {
  send_cmd "ACKNOWLEDGE_SVC_PROBLEM;${1:-$HOST1};${2:-$SVC1};${NF_ACK_STICKY:-2};${NF_ACK_NOTIFY:-0};${NF_ACK_PERSISTENT:-0};${NF_ACK_AUTHOR:-twilio-bridge};${NF_ACK_COMMENT:-acknowledged by phone}"
}
ack_host() {
  send_cmd "ACKNOWLEDGE_HOST_PROBLEM;${1:-$HOST2};${NF_ACK_STICKY:-2};${NF_ACK_NOTIFY:-0};${NF_ACK_PERSISTENT:-0};${NF_ACK_AUTHOR:-twilio-bridge};${NF_ACK_COMMENT:-acknowledged by phone}"
}

# status_field hoststatus|servicestatus HOST SVC FIELD -> value from status.dat
status_field() {
  awk -v blk="$1" -v h="$2" -v s="$3" -v f="$4" '
    $0 ~ "^" blk " \\{" { inb=1; hn=""; sd=""; val=""; next }
    inb && /^\t}/ { if (hn==h && (blk=="hoststatus" || sd==s)) { print val; exit } inb=0; next }
    inb { line=$0; sub(/^\t/, "", line); k=line; sub(/=.*/, "", k); v=substr(line, length(k)+2)
          if (k=="host_name") hn=v; if (k=="service_description") sd=v; if (k==f) val=v }' "$D/status.dat"
}
wait_ack() {
  local kind=${1:?svc|host} host=${2:-} svc=${3:-$SVC1} to=${4:-30} end v blk
  if [ "$kind" = svc ]; then blk=servicestatus; host=${host:-$HOST1}; else blk=hoststatus; host=${host:-$HOST2}; fi
  end=$(( $(date +%s) + to ))
  while :; do
    v=$(status_field "$blk" "$host" "$svc" problem_has_been_acknowledged 2>/dev/null || true)
    [ "$v" = 1 ] && { echo "problem_has_been_acknowledged=1 acknowledgement_type=$(status_field "$blk" "$host" "$svc" acknowledgement_type) current_state=$(status_field "$blk" "$host" "$svc" current_state)"; return 0; }
    [ "$(date +%s)" -ge "$end" ] && { log "timeout waiting for ack ($kind $host)"; return 1; }
    sleep 0.2
  done
}

ack_flow() {  # wait for the PROBLEM notification, ACK it, verify status.dat
  local kind=${1:?svc|host} to=${2:-60} t0 line
  t0=$(date +%s.%N)
  if [ "$kind" = svc ]; then line=$(wait_notify PROBLEM "$HOST1" "$SVC1" "$to"); ack_svc
  else line=$(wait_notify PROBLEM "$HOST2" - "$to"); ack_host; fi
  log "PROBLEM record: $line"
  line=$(wait_ack "$kind" "" "$SVC1" "$to")
  echo "$kind acknowledged: $line ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2fs", b-a}'))"
}

stop() {
  local pid; pid=$(read_pid)
  [ -n "$pid" ] || { log "no pid in $D/nagios.lock"; return 0; }
  # the daemon's children: worker processes (--worker) and the command-file worker
  local kids; kids=$(ps -eo pid=,ppid= | awk -v p="$pid" '$2==p {print $1}')
  kill -TERM "$pid" 2>/dev/null || true
  local i; for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { log "nagios $pid ignored TERM, sending KILL"; kill -KILL "$pid" || true; }
  for i in $(seq 1 30); do
    local alive=""; for k in $kids; do kill -0 "$k" 2>/dev/null && alive+=" $k"; done
    [ -z "$alive" ] && break; sleep 0.1
  done
  for k in $kids; do kill -0 "$k" 2>/dev/null && { log "killing leftover child $k"; kill -TERM "$k" || true; }; done
  rm -f "$D/nagios.cmd" "$D/nagios.qh"   # a stale FIFO would make writers block
  log "stopped nagios pid $pid (children: $(echo $kids))"
}

e2e() {
  local t0 pid line kids
  t0=$(date +%s.%N)
  el() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2fs", b-a}'; }
  pid=$(start); log "nagios started, PID=$pid ($(el))"
  ps -o pid=,user=,args= --ppid "$pid" -p "$pid" >&2
  svc_state 2; host_state 2; log "svc.state=2 host.state=2 ($(el))"
  line=$(wait_notify PROBLEM "$HOST1" "$SVC1" 60); log "T_SVC_PROBLEM=$(el): $line"
  line=$(wait_notify PROBLEM "$HOST2" - 60);      log "T_HOST_PROBLEM=$(el): $line"
  NF_ACK_STICKY=2 NF_ACK_NOTIFY=1 NF_ACK_PERSISTENT=0 ack_svc
  NF_ACK_STICKY=2 NF_ACK_NOTIFY=0 NF_ACK_PERSISTENT=1 ack_host
  line=$(wait_ack svc);  log "T_SVC_ACKED=$(el): status.dat $line"
  line=$(wait_ack host); log "T_HOST_ACKED=$(el): status.dat $line"
  line=$(wait_notify ACKNOWLEDGEMENT "$HOST1" "$SVC1" 30); log "ACKNOWLEDGEMENT notification ($(el)): $line"
  svc_state 0; host_state 0; log "svc.state=0 host.state=0 ($(el))"
  line=$(wait_notify RECOVERY "$HOST1" "$SVC1" 60); log "T_SVC_RECOVERY=$(el): $line"
  line=$(wait_notify RECOVERY "$HOST2" - 60);      log "T_HOST_RECOVERY=$(el): $line"
  sleep 1.2  # one status_update_interval
  log "after recovery: svc ack=$(status_field servicestatus "$HOST1" "$SVC1" problem_has_been_acknowledged) host ack=$(status_field hoststatus "$HOST2" "" problem_has_been_acknowledged)"
  kids=$(ps -o pid= --ppid "$pid" | tr -s ' \n' ' ')
  stop
  sleep 0.5
  for k in $pid $kids; do kill -0 "$k" 2>/dev/null && die "process $k still alive"; done
  log "all nagios processes gone ($pid $kids)"
  log "E2E OK in $(el)"
  echo "--- notify.log"; cat "$D/notify.log"
  echo "--- nagios.log (alerts / notifications / external commands / warnings)"
  grep -E 'ALERT|NOTIFICATION|EXTERNAL COMMAND|Warning|Error' "$D/nagios.log" || true
}

case "$ACTION" in
  start) start ;;
  svc-state) svc_state "$@" ;;
  host-state) host_state "$@" ;;
  wait-notify) wait_notify "$@" ;;
  ack-svc) ack_svc "$@" ;;
  ack-host) ack_host "$@" ;;
  wait-ack) wait_ack "$@" ;;
  ack-flow) ack_flow "$@" ;;
  status-field) status_field "$@" ;;
  stop) stop ;;
  e2e) e2e ;;
  *) die "unknown action $ACTION" ;;
esac
