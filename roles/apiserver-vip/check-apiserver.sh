#!/bin/sh
# Written by director-boot (role apiserver-vip) for {{ node.name }}; rewritten on every apply.
# keepalived's check: this host may hold the endpoint only while its own API server is ready.
exec /usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=5s get --raw /readyz >/dev/null 2>&1
