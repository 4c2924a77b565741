"""The test guest's own programs: its ``/init``, its DHCP hook and its ACPI map.

The guest runs entirely from its initramfs (busybox), so these are POSIX ``sh`` for busybox.
Everything the guest learns is printed to the serial console as marker lines that start with
``STRATUS-`` (tests and benchmarks read them from the console log):

- ``STRATUS-INIT uptime=S product="P" serial=X``: init started (the kernel has booted);
  the SMBIOS product name and serial the hypervisor gave
- ``STRATUS-MEM total_kb=K``: the memory the guest's kernel has (``MemTotal``), which
  follows the flavor's RAM (a resize to a larger flavor shows more)
- ``STRATUS-CONFIGDRIVE device=D``: a config drive (ISO 9660 labelled ``config-2``) is
  mounted; then, when its ``meta_data.json`` has an ``admin_pass``, root's password is
  set to it (a SHA-512 crypt in ``/etc/shadow``) and ``STRATUS-PASSWORD user=root
  sha256=H shadow=ok`` says so: ``H`` is the SHA-256 of the password applied (never the
  password itself), ``shadow=ok`` that the shadow entry, hashed again from the drive's
  password with its own salt, matches (``shadow=bad`` if not). The password is read as a
  plain JSON string (what compute generates: no escapes)
- ``STRATUS-NET iface=eth0 ip=A/P`` or ``STRATUS-NET none``: DHCP result
- ``STRATUS-METADATA ok`` / ``STRATUS-METADATA unreachable``
- ``STRATUS-GUEST ip=A uuid=U hostname=H uptime=S``: what the guest knows about itself
  (uuid from the metadata, else the SMBIOS serial)
- ``STRATUS-USERDATA-BEGIN``, the user-data script's output, ``STRATUS-USERDATA-END rc=N``
- ``STRATUS-DISK name=vdX size=BYTES`` for each block device at boot,
  ``STRATUS-DISK-ADDED ...`` / ``STRATUS-DISK-REMOVED name=vdX`` for hot-plugged ones
- ``STRATUS-SSH up`` (or ``STRATUS-SSH failed``): only for a server with a key pair:
  its public key is root's ``authorized_keys`` and dropbear listens on port 22
- ``STRATUS-READY uptime=S``: init is done; the guest stays up, powering off on ACPI
  power-button presses (``STRATUS-POWEROFF``)
- ``STRATUS-TICK uptime=S`` every two seconds after that: the guest's clock, seen from
  outside (a paused guest prints none; a suspended and resumed one keeps counting)

busybox 1.35's static ``wget -T`` crashes (SIGSEGV), so time limits come from ``timeout``.

SSH, for a server with a key pair only (``meta_data.json`` lists public keys): dropbear
(Debian's ``dropbear-bin``) logs root in with the key the metadata service serves (EC2's
``public-keys/0/openssh-key``). It and its libraries are on the boot disk's file system
under ``/ssh`` (the initramfs, which every boot unpacks, stays as small as it was), which
init mounts read-only; the host key is made on the first connection (``-R``). A guest
without a key pair boots as before.
"""

METADATA_BASE = "http://169.254.169.254/openstack/latest"
EC2_METADATA_BASE = "http://169.254.169.254/latest/meta-data"
#: Where dropbear and its libraries are on the disk's file system (their guest paths below).
SSH_DIR = "ssh"

#: The files dropbear needs to know root (its shell, its home) and the shells it accepts.
SSH_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/shells": "/bin/sh\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\n",
}

INIT = r"""#!/bin/busybox sh
# Stratus test guest init (PID 1). See stratus/guest_image/scripts.py.
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /proc /sys /dev /run /tmp /mnt
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
exec </dev/console >/dev/console 2>&1
hostname -F /etc/hostname
up() { cut -d' ' -f1 /proc/uptime; }
# SMBIOS as the hypervisor set it (cloud-init's OpenStack detection reads the same).
PRODUCT=$(cat /sys/class/dmi/id/product_name 2>/dev/null)
SERIAL=$(cat /sys/class/dmi/id/product_serial 2>/dev/null)
echo "STRATUS-INIT uptime=$(up) product=\"$PRODUCT\" serial=${SERIAL:-none}"
echo "STRATUS-MEM total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"

for m in $(cat /etc/modules-order); do
    insmod "/lib/modules/$m.ko" 2>/dev/null
done
echo 0 > /proc/sys/kernel/printk 2>/dev/null

# A config drive (Nova's: ISO 9660 labelled config-2, a cdrom): root's password from it.
# Its modules probe the IDE bus for a while: that runs while the network comes up, and
# init waits for it before it says it is ready.
config_drive() {
    for m in $(cat /etc/modules-config-drive); do
        insmod "/lib/modules/$m.ko" 2>/dev/null
    done
    CONFIG=$(findfs LABEL=config-2 2>/dev/null)
    if [ -n "$CONFIG" ] && mkdir -p /run/config \
            && mount -t iso9660 -o ro "$CONFIG" /run/config 2>/dev/null; then
        echo "STRATUS-CONFIGDRIVE device=${CONFIG#/dev/}"
        PASS=$(grep -o '"admin_pass": *"[^"\\]*"' \
               /run/config/openstack/latest/meta_data.json | head -n1 \
               | sed 's/.*"\([^"]*\)"$/\1/')
        if [ -n "$PASS" ]; then
            HASH=$(printf '%s' "$PASS" | mkpasswd -m sha512 -P 0)
            echo "root:$HASH:0:0:99999:7:::" > /etc/shadow
            chmod 600 /etc/shadow
            # The entry checked: the drive's password hashed again with the entry's salt.
            STORED=$(grep '^root:' /etc/shadow | cut -d: -f2)
            SALT=$(echo "$STORED" | cut -d'$' -f3)
            AGAIN=$(printf '%s' "$PASS" | mkpasswd -m sha512 -S "$SALT" -P 0)
            [ -n "$STORED" ] && [ "$AGAIN" = "$STORED" ] && SHADOW=ok || SHADOW=bad
            echo "STRATUS-PASSWORD user=root" \
                 "sha256=$(printf '%s' "$PASS" | sha256sum | cut -d' ' -f1) shadow=$SHADOW"
        fi
    fi
}
config_drive &
CONFIG_DRIVE=$!

# ACPI power button -> clean power off (the compute host's soft shutdown).
acpid -c /etc/acpi -l /run/acpid.log 2>/dev/null

ip link set lo up
IFACE=""
# Wait for the NIC only if the machine has one (virtio-net: 1af4:1000 or 1af4:1041).
WAIT="1"
for d in /sys/bus/pci/devices/*; do
    case "$(cat $d/vendor):$(cat $d/device)" in
        0x1af4:0x1000|0x1af4:0x1041) WAIT="1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20";;
    esac
done
for i in $WAIT; do
    IFACE=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
    [ -n "$IFACE" ] && break
    sleep 0.2
done
IP=none
if [ -n "$IFACE" ]; then
    ip link set "$IFACE" up
    if udhcpc -i "$IFACE" -O staticroutes -s /etc/udhcpc.script -n -q -t 20 -T 1 -A 1 \
            >/run/udhcpc.log 2>&1; then
        IP=$(cat /run/ip 2>/dev/null || echo none)
        echo "STRATUS-NET iface=$IFACE ip=$IP"
    else
        echo "STRATUS-NET iface=$IFACE ip=none (no DHCP answer)"
        cat /run/udhcpc.log
    fi
else
    echo "STRATUS-NET none"
fi

disks() { ls /sys/block 2>/dev/null | grep -E '^(vd|sd|xvd)' ; }
# dropbear from the disk that holds it (mounted read-only; its paths linked into place).
start_ssh() {
    mkdir -p /run/disk
    for d in $(disks); do
        mount -o ro "/dev/$d" /run/disk 2>/dev/null || continue
        if [ -x /run/disk/@SSH@/usr/sbin/dropbear ]; then
            ln -s /run/disk/@SSH@/lib64 /lib64
            ln -s /run/disk/@SSH@/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
            ln -s /run/disk/@SSH@/usr/sbin/dropbear /usr/sbin/dropbear
            # Host keys are made on the first connection (-R): nothing to wait for here.
            dropbear -R -E -P /run/dropbear.pid -p 22 2>/run/dropbear.log
            return
        fi
        umount /run/disk
    done
    return 1
}

# The first "key": "value" string of that name in meta_data.json.
field() {
    grep -o "\"$1\": *\"[^\"]*\"" /run/meta_data.json | head -n1 | sed 's/.*"\([^"]*\)"$/\1/'
}
UUID=${SERIAL:-unknown}
HOSTNAME=$(hostname)
if [ "$IP" != none ]; then
    ok=""
    for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        if timeout 5 wget -q -O /run/meta_data.json @METADATA@/meta_data.json 2>/dev/null; then
            ok=1; break
        fi
        sleep 0.5
    done
    if [ -n "$ok" ]; then
        echo "STRATUS-METADATA ok"
        UUID=$(field uuid)
        H=$(field hostname)
        [ -n "$H" ] && HOSTNAME="$H" && hostname "$H"
        if grep -q '"public_keys": *{ *"' /run/meta_data.json; then
            mkdir -p /root/.ssh && chmod 700 /root/.ssh
            if timeout 10 wget -q -O /root/.ssh/authorized_keys \
                    @EC2@/public-keys/0/openssh-key 2>/dev/null && start_ssh; then
                echo "STRATUS-SSH up"
            else
                echo "STRATUS-SSH failed"
                cat /run/dropbear.log 2>/dev/null
            fi
        fi
        if timeout 10 wget -q -O /run/user_data @METADATA@/user_data 2>/dev/null \
                && [ -s /run/user_data ]; then
            if head -c2 /run/user_data | grep -q '^#!'; then
                chmod +x /run/user_data
                echo "STRATUS-USERDATA-BEGIN"
                /run/user_data
                echo "STRATUS-USERDATA-END rc=$?"
            else
                echo "STRATUS-USERDATA not a script ($(wc -c </run/user_data) bytes)"
            fi
        fi
    else
        echo "STRATUS-METADATA unreachable"
        # What the guest had, for whoever reads the console to find out why.
        ip -4 addr show; ip -4 route show
        timeout 5 wget -O /dev/null @METADATA@/meta_data.json 2>&1 | tail -n2
        cat /run/udhcpc.log
    fi
fi
echo "STRATUS-GUEST ip=${IP%/*} uuid=$UUID hostname=$HOSTNAME uptime=$(up)"

for d in $(disks); do
    echo "STRATUS-DISK name=$d size=$(( $(cat /sys/block/$d/size) * 512 ))"
done
wait "$CONFIG_DRIVE"
echo "STRATUS-READY uptime=$(up)"

known=" $(disks | tr '\n' ' ') "
tick=0
while true; do
    sleep 1
    tick=$((tick + 1))
    [ $((tick % 2)) -eq 0 ] && echo "STRATUS-TICK uptime=$(up)"
    now=" $(disks | tr '\n' ' ') "
    for d in $now; do
        case "$known" in *" $d "*) ;; *)
            echo "STRATUS-DISK-ADDED name=$d size=$(( $(cat /sys/block/$d/size) * 512 ))";;
        esac
    done
    for d in $known; do
        case "$now" in *" $d "*) ;; *) echo "STRATUS-DISK-REMOVED name=$d";; esac
    done
    known="$now"
done
""".replace("@METADATA@", METADATA_BASE).replace("@EC2@", EC2_METADATA_BASE).replace(
    "@SSH@", SSH_DIR)

#: udhcpc's hook: addresses, then the option-121 routes when the server sent them (RFC 3442
#: says a client that gets option 121 ignores option 3), else the router as default route.
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        prefix=$(ipcalc -p "$ip" "$subnet" | cut -d= -f2)
        ip addr flush dev "$interface"
        ip addr add "$ip/$prefix" dev "$interface"
        [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
        if [ -n "$staticroutes" ]; then
            set -- $staticroutes
            while [ $# -ge 2 ]; do
                if [ "$2" = "0.0.0.0" ]; then
                    ip route replace "$1" dev "$interface"
                else
                    ip route replace "$1" via "$2" dev "$interface"
                fi
                shift 2
            done
        elif [ -n "$router" ]; then
            for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
        fi
        : > /etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
        [ -n "$hostname" ] && hostname "$hostname"
        echo "$ip/$prefix" > /run/ip
        echo "udhcpc: $1 $ip/$prefix router=$router staticroutes=$staticroutes"
        ;;
esac
exit 0
"""

#: busybox acpid runs ``/etc/acpi/PWRF/00000080`` when the power button is pressed.
POWEROFF_PATH = "etc/acpi/PWRF/00000080"
POWEROFF = "#!/bin/sh\necho STRATUS-POWEROFF >/dev/console\nsync\npoweroff -f\n"

EXTLINUX_CONF = """DEFAULT stratus
PROMPT 0
TIMEOUT 1
LABEL stratus
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND console=ttyS0 quiet loglevel=3 panic=5
"""
