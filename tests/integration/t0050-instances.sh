#!/usr/bin/env bash
# Issue 3's "done when": after `ciel up`, a user imports a busybox image, runs
# three instances that land in three zones, reads their logs, stops and
# deletes them, and finds all of it in the audit trail. Then the isolation
# proofs: another tenant cannot see or touch them (404), cannot reach them on
# the network, an instance over its memory limit is killed as "oom", an
# instance cannot read host files, hostile tarballs are refused leaving
# nothing on disk, and `ciel down` leaves no container, namespace, bridge, nft
# table or cgroup behind.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v runc >/dev/null; then
	echo "# SKIP: needs root and runc (scripts/deps.sh installs runc)"; exit 0
fi
UP=$T/up
# what exists before (another region may run on this machine): compared at the end
host_objects() {
	{ ip netns list | grep -o '^ciel-[0-9a-f]*'
	  ip -o link | grep -oE ': (cb|cv|cp)[0-9a-f]{13}'
	  nft list tables 2>/dev/null | grep -o 'ciel_[0-9a-f]*'
	  find /sys/fs/cgroup/memory/ciel /sys/fs/cgroup/pids/ciel -mindepth 1 -type d 2>/dev/null
	  grep -o "$UP[^ ]*" /proc/self/mountinfo; } | sort
}
host_objects >"$T/objects.before"
down() { ciel down --data "$UP" >/dev/null 2>&1; }
trap 'down; cleanup' EXIT

expect_exit 0 "ciel up starts a region" ciel up --data "$UP" --listen "127.0.0.1:$PORT"
ready=0
for _ in $(seq 100); do
	ready=$(ciel node list --output json 2>/dev/null | jq '[.items[]|select(.state=="Ready")]|length')
	[ "$ready" = 3 ] && break; sleep 0.1
done
check "three Ready nodes" test "$ready" = 3
ciel tenant create acme --save-profile acme >/dev/null 2>&1
ciel tenant create beta --save-profile beta >/dev/null 2>&1
A() { ciel --profile acme "$@"; }
B() { ciel --profile beta "$@"; }
export -f ciel A B

mk_busybox_tar "$T/bb.tar"
expect_exit 0 "acme imports a busybox image" A image import busybox "$T/bb.tar" --output json
check "the image is content-addressed" bash -c "jq -e '.digest|test(\"^sha256:[0-9a-f]{64}$\")' '$T/out'"
expect_exit 0 "image list" A image list --output json
check "acme sees busybox" bash -c "jq -e '[.items[].name]|index(\"busybox\")' '$T/out'"

for i in 1 2 3; do
	expect_exit 0 "run web-$i" A instance run busybox --name web-$i --cpu 0.1 --memory 32M --wait \
		-- sh -c "echo hello from web-$i; while true; do sleep 1; done"
done
expect_exit 0 "instance list" A instance list --output json
check "all three are running" test "$(jq '[.items[]|select(.state=="running")]|length' "$T/out")" = 3
check "they landed in three different zones" test "$(jq '[.items[].zone]|unique|length' "$T/out")" = 3
check "each has an address on acme's subnet" bash -c "jq -e 'all(.items[]; .address|test(\"^10\\\\.200\\\\.[0-9]+\\\\.[0-9]+/24$\"))' '$T/out'"
ok_logs=0
for _ in $(seq 25); do A instance logs web-2 2>/dev/null | grep -q "hello from web-2" && { ok_logs=1; break; }; sleep 0.2; done
check "logs show what web-2 printed" test "$ok_logs" = 1

# tenant isolation: beta sees nothing of acme (404, not 403)
expect_exit 1 "beta cannot show acme's instance" B instance show web-1
check "it is not_found" grep -q not_found "$T/err"
expect_exit 1 "beta cannot stop acme's instance" B instance stop web-1
check "stop is not_found too" grep -q not_found "$T/err"
expect_exit 1 "beta cannot read acme's logs" B instance logs web-1
expect_exit 1 "beta cannot see acme's image" B image show busybox
check "image is not_found" grep -q not_found "$T/err"
expect_exit 0 "beta's instance list" B instance list --output json
check "beta's list is empty" test "$(jq '.items|length' "$T/out")" = 0
expect_exit 1 "beta cannot run from acme's image" B instance run busybox -- true
check "web-1 still runs" wait_instance acme web-1 running 1

# the network: same tenant reaches, another tenant does not (all on one node);
# nc, not wget: busybox-static's wget crashes in a chroot on Debian 12
A instance run busybox --name srv --zone az1 --wait -- sh -c 'mkdir -p /www; echo secret-of-acme >/www/index.html; exec httpd -f -p 8080 -h /www' >/dev/null 2>&1
addr=$(A instance show srv --output json | jq -r '.address|sub("/24$";"")')
B image import busybox "$T/bb.tar" >/dev/null 2>&1
A instance run busybox --name peer --zone az1 -- sh -c "sleep 1; printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 $addr 8080; echo rc=\$?" >/dev/null 2>&1
B instance run busybox --name spy --zone az1 -- sh -c "sleep 1; printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 $addr 8080; echo rc=\$?" >/dev/null 2>&1
check "peer finished" wait_instance acme peer exited 20
check "spy finished" wait_instance beta spy exited 20
check "acme's peer reached acme's server" bash -c "ciel --profile acme instance logs peer | grep -q secret-of-acme"
check "beta's spy could not reach it" bash -c "ciel --profile beta instance logs spy | grep -q 'rc=[1-9]' && ! ciel --profile beta instance logs spy | grep -q secret-of-acme"

# confinement
A instance run busybox --name hog --memory 16M -- sh -c 'x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done' >/dev/null 2>&1
check "a process over its memory limit ends" wait_instance acme hog "exited|failed" 30
check "and the instance says oom" test "$(A instance show hog --output json | jq -r .reason)" = oom
secret=/root/ciel-host-secret-$$
echo top-secret >"$secret"
A instance run busybox --name peek -- sh -c "cat $secret /etc/shadow; ls /proc/1/root/root 2>&1; exit 0" >/dev/null 2>&1
check "peek finished" wait_instance acme peek exited 20
check "an instance cannot read host files" bash -c "! ciel --profile acme instance logs peek | grep -q top-secret"
rm -f "$secret"
A instance run busybox --name three -- sh -c 'exit 3' >/dev/null 2>&1
check "exit codes come back" bash -c "ciel --profile acme instance show three --output json >/dev/null; for i in \$(seq 50); do c=\$(ciel --profile acme instance show three --output json | jq -r .exit_code); [ \"\$c\" = 3 ] && exit 0; sleep 0.2; done; exit 1"

# quota at admission
ciel quota set --tenant beta --instances 1 >/dev/null
expect_exit 1 "beta's second instance is refused by its quota" B instance run busybox -- true
check "the refusal names the quota" grep -q "instances" "$T/err"

# bad input
expect_exit 2 "a bad size is a usage error" A instance run busybox --memory lots -- true
expect_exit 1 "an unknown image is refused" A instance run nosuch -- true
check "it says how to import one" grep -q "image import" "$T/err"
expect_exit 1 "a name with a slash is refused" A image import 'a..b' "$T/bb.tar"
nblobs() { find "$UP/blobs" -type f 2>/dev/null | wc -l; }
before=$(nblobs)
mkdir -p "$T/evil" && echo x >"$T/evil/f"
tar -C "$T/evil" -cf "$T/evil.tar" --transform 's|^f$|../../etc/evil|' f 2>/dev/null
expect_exit 1 "a tarball with .. is refused" A image import evil "$T/evil.tar"
check "the refusal names the entry" grep -q "etc/evil" "$T/err"
ln -sf /etc/passwd "$T/evil/link" && echo y >"$T/evil/g"
tar -C "$T/evil" -cf "$T/evil2.tar" --transform 's|^link$|../x|' link 2>/dev/null
expect_exit 1 "a link escaping the root is refused" A image import evil2 "$T/evil2.tar"
check "nothing new in blobs/" test "$(nblobs)" = "$before"
# it announces 1 GB and sends 2 MB: only an answer before the body can come back in time
code=$(curl -s -m 10 -o "$T/unsigned.json" -w '%{http_code}' --cacert "$UP/pki/ca.pem" -X PUT \
	-H 'Content-Length: 1000000000' --data-binary "@$T/bb.tar" "https://127.0.0.1:$PORT/v1/images/sneaky")
check "an unsigned upload is refused before its body is read (401)" test "$code" = 401
chmod 4755 "$T/bbroot/bin/busybox" && tar -C "$T/bbroot" -cf "$T/suid.tar" . && chmod 0755 "$T/bbroot/bin/busybox"
expect_exit 1 "a tenant's image with a setuid file is refused" A image import suid "$T/suid.tar"
check "the refusal says setuid" grep -qi setuid "$T/err"
expect_exit 0 "the operator may publish it with --allow-setuid" ciel image import suid "$T/suid.tar" --public --allow-setuid
A instance run suid --name suid -- ls -l /bin/busybox >/dev/null 2>&1
check "an instance of it runs" wait_instance acme suid exited 20
check "with the setuid bit kept on the node" bash -c "ciel --profile acme instance logs suid | grep -q '^-rws'"

# stop, start, delete
expect_exit 0 "stop web-1" A instance stop web-1 --wait
check "web-1 is stopped" wait_instance acme web-1 "stopped|exited" 20
expect_exit 0 "start web-1 again" A instance start web-1 --wait
check "web-1 runs again" wait_instance acme web-1 running 20
for n in web-1 web-2 web-3 srv peer hog peek three suid; do
	A instance delete "$n" --wait >/dev/null 2>&1
done
B instance delete spy --wait >/dev/null 2>&1
expect_exit 0 "instance list after delete" A instance list --output json
check "acme has no instance left" test "$(jq '.items|length' "$T/out")" = 0
check "no container left in any runtime" bash -c "! ls $UP/agents/*/runtime/*/state.json 2>/dev/null | grep -q ."

expect_exit 0 "audit list" A audit list --output json --limit 1000
for act in image.import instance.run instance.logs instance.stop instance.start instance.delete; do
	check "the trail has $act" bash -c "jq -e '[.items[]|select(.action==\"$act\")]|length>0' '$T/out'"
done
check "beta's refused attempt is in beta's trail" bash -c "ciel --profile beta audit list --output json --limit 1000 | jq -e '[.items[]|select(.action==\"instance.stop\" and .status==404)]|length>0'"
expect_exit 0 "audit verify" A audit verify

# ciel down leaves nothing behind
down
host_objects >"$T/objects.after"
comm -13 "$T/objects.before" "$T/objects.after" >"$T/objects.new"
check "ciel down left no namespace, bridge, veth, nft table, cgroup or mount" test ! -s "$T/objects.new"
[ -s "$T/objects.new" ] && sed 's/^/#   left: /' "$T/objects.new" | head
finish
