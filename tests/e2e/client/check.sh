#!/bin/sh
# Runs from the NFS root: report what the client sees, then power off.
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "E2E-PHASE init $(cut -d' ' -f1 /proc/uptime)"
echo "E2E-ROOT $(awk '$2=="/"{print $3, $4}' /proc/mounts | tail -n1)"
if echo x > /probe-write 2>/dev/null; then echo "E2E-ROOT-WRITABLE"; else echo "E2E-ROOT-READONLY"; fi
for f in /special/*; do
  echo "E2E-STAT $(stat -c '%n %f %u %g %h %t %T %s' "$f")"
done
echo "E2E-SUM $(sha256sum /big.bin | cut -d' ' -f1) $(cat /big.sha256)"
echo "E2E-PHASE read $(cut -d' ' -f1 /proc/uptime)"
echo "E2E-DONE"
sync
poweroff -f
