"""MicroVM agents through the host API. This test machine's /dev/kvm is kvm_pvm, on which a Linux
guest cannot boot: a VM spawn must say so (the VM tier itself is tested in tests/nested)."""

import os

import pytest

import clove

# The fixtures clove_lib and rt.
pytest_plugins = ["test_host_support"]

KVM_PVM = os.path.exists("/sys/module/kvm_pvm")


@pytest.mark.skipif(not KVM_PVM, reason="SKIPPED: only a kvm_pvm host refuses every VM")
def test_a_vm_spawn_on_kvm_pvm_says_why_it_cannot_boot(rt):
    with pytest.raises(clove.Unsupported, match="kvm_pvm.*hardware KVM"):
        rt.spawn("guest", ["/bin/true"], vm=True, vcpus=2)


def test_vm_options_are_checked(rt):
    with pytest.raises(clove.InvalidArgument, match="1 to 32"):
        rt.spawn("guest", ["/bin/true"], vm=True, vcpus=33)
    # A process-count limit would bound nothing in a guest: refused, not dropped.
    with pytest.raises(clove.Unsupported, match="process limit"):
        rt.spawn("guest", ["/bin/true"], vm=True, limits=clove.Limits(max_pids=10))
