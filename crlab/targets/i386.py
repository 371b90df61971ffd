from crlab.targets import TargetProfile

PROFILE = TargetProfile(
    name="i386",
    description="32-bit x86 PC (QEMU pc machine, Pentium III)",
    arch="i386",
    cross_compile="i686-linux-gnu-",
    toolchain_packages=("gcc-i686-linux-gnu", "libc6-dev-i386-cross"),
    make_target="bzImage",
    kernel_image="arch/x86/boot/bzImage",
    kconfig_fragments=("arch/x86.config", "arch/i386.config"),
    tiny_arch_fragments=("arch/x86/configs/tiny.config",),
    uname_machine="i686",
    debian_arch="i386",
    qemu_binary="qemu-system-i386",
    qemu_package="qemu-system-x86",
    machine="pc",
    cpu="pentium3",
    console="ttyS0",
    nic_device="virtio-net-pci",
    shutdown_command="reboot -f",
)
