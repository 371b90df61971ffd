"""Guest control, in layers: a QEMU machine (qemu.py), and shells on it (console.py over the
serial console with pexpect, ssh.py over SSH with paramiko) behind one interface (shell.py)."""
