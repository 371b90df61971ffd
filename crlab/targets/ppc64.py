from crlab.targets import TargetProfile

PROFILE = TargetProfile(
    name="ppc64",
    description="64-bit big-endian POWER (QEMU pseries, POWER8)",
    arch="powerpc",
    cross_compile="powerpc64-linux-gnu-",
    toolchain_packages=("gcc-powerpc64-linux-gnu", "libc6-dev-ppc64-cross"),
    # pseries cannot boot the wrapped zImage: it takes the ELF vmlinux
    make_target="vmlinux",
    kernel_image="vmlinux",
    kconfig_fragments=("arch/ppc64-pseries.config", "arch/ppc64be.config"),
    # Debian has no big-endian ppc64 userland: busybox and dropbear are cross-built from source
    uname_machine="ppc64",
    debian_arch=None,
    busybox_from="source",
    dropbear_from="source",
    elf_bits=64,
    elf_endian="big",
    elf_machine="EM_PPC64",
    lib_dirs=("/lib/powerpc64-linux-gnu", "/usr/lib/powerpc64-linux-gnu", "/lib", "/usr/lib", "/lib64", "/usr/lib64"),
    qemu_binary="qemu-system-ppc64",
    qemu_package="qemu-system-ppc",
    # the caps silence TCG warnings; x-vof replaces SLOF (about 10 s of every boot) with QEMU's
    # own minimal firmware, which boots vmlinux straight from -kernel
    machine="pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off,x-vof=on",
    cpu="power8",
    console="hvc0",
    nic_device="virtio-net-pci",
    qemu_extra_args=("-vga", "none"),
)
