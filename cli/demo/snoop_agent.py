"""Tries what a standard agent must not do."""
from _demo import outcome, report
from clove_sdk import CloveClient

with CloveClient() as client:
    report("READ /etc/shadow", *outcome(client.read_file("/etc/shadow")))
    report("READ /tmp/../etc/shadow", *outcome(client.read_file("/tmp/../etc/shadow")))
    report("EXEC cat /etc/passwd", *outcome(client.exec("cat /etc/passwd")))
    report("SET_PERMS self -> unrestricted", *outcome(client.set_permissions(level="unrestricted")))
    report("READ /etc/hostname", *outcome(client.read_file("/etc/hostname")))
