from crlab.targets import TargetProfile

PROFILE = TargetProfile(
    name="x86_64",
    description="64-bit x86 PC (QEMU pc machine)",
    arch="x86_64",
    cross_compile="x86_64-linux-gnu-",
    toolchain_packages=("gcc",),
    make_target="bzImage",
    kernel_image="arch/x86/boot/bzImage",
    kconfig_fragments=("arch/x86.config", "arch/x86_64.config"),
    tiny_arch_fragments=("arch/x86/configs/tiny.config",),
    uname_machine="x86_64",
    debian_arch="amd64",
    elf_bits=64,
    elf_endian="little",
    elf_machine="EM_X86_64",
    lib_dirs=("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib", "/lib64", "/usr/lib64"),
    host_runs_natively=("x86_64",),
    qemu_binary="qemu-system-x86_64",
    qemu_package="qemu-system-x86",
    machine="pc",
    cpu="qemu64",
    console="ttyS0",
    nic_device="virtio-net-pci",
    # without ACPI, poweroff only halts the cpu; with -no-reboot a reboot ends QEMU
    shutdown_command="reboot -f",
    engines=("criu",),
)
