from crlab.targets import TargetProfile

PROFILE = TargetProfile(
    name="ppc64le",
    description="64-bit little-endian POWER (QEMU pseries, POWER8)",
    arch="powerpc",
    cross_compile="powerpc64le-linux-gnu-",
    toolchain_packages=("gcc-powerpc64le-linux-gnu", "libc6-dev-ppc64el-cross"),
    make_target="vmlinux",
    kernel_image="vmlinux",
    kconfig_fragments=("arch/ppc64-pseries.config", "arch/ppc64le.config"),
    uname_machine="ppc64le",
    debian_arch="ppc64el",
    qemu_binary="qemu-system-ppc64",
    qemu_package="qemu-system-ppc",
    machine="pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off,x-vof=on",
    cpu="power8",
    console="hvc0",
    nic_device="virtio-net-pci",
    qemu_extra_args=("-vga", "none"),
)
