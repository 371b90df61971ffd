from crlab.targets import TargetProfile

PROFILE = TargetProfile(
    name="armv7",
    description="32-bit ARMv7 hard-float (QEMU virt, Cortex-A15)",
    arch="arm",
    cross_compile="arm-linux-gnueabihf-",
    toolchain_packages=("gcc-arm-linux-gnueabihf", "libc6-dev-armhf-cross"),
    make_target="zImage",
    kernel_image="arch/arm/boot/zImage",
    kconfig_fragments=("arch/armv7-virt.config",),
    uname_machine="armv7l",
    debian_arch="armhf",
    elf_bits=32,
    elf_endian="little",
    elf_machine="EM_ARM",
    lib_dirs=("/lib/arm-linux-gnueabihf", "/usr/lib/arm-linux-gnueabihf", "/lib", "/usr/lib"),
    qemu_binary="qemu-system-arm",
    qemu_package="qemu-system-arm",
    machine="virt",
    cpu="cortex-a15",
    console="ttyAMA0",
    # arm virt has no PCI in this kernel config: virtio devices sit on MMIO
    nic_device="virtio-net-device",
)
