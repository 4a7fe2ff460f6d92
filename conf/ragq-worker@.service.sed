# ragq-worker@.service, the template unit for several workers on one host, is
# ragq-worker.service with the edits below (sed -f, by `make install`, which
# the .deb build runs): one source, so the two units cannot drift apart in
# their sandbox, Type=notify, watchdog or timeouts.  `make install` fails
# when an edit no longer finds its line (Makefile, install-files), and
# tests/install/install.t checks that nothing else differs.

# The header comment: the template's own.
1,/^\[Unit\]$/{
/^\[Unit\]$/!d
i\
# systemd template unit: several ragq-workers on one host, ragq-worker@NAME\
# (NAME: 1, 2, ... or any name), installed by the ragq-worker package (or\
# `make install`) next to ragq-worker.service and made from it\
# (conf/ragq-worker@.service.sed): the same settings but for these.  Installed\
# neither enabled nor started:\
#   systemctl enable --now ragq-worker@1 ragq-worker@2\
# Each instance\
#  - reads /etc/default/ragq-worker, then /etc/default/ragq-worker-NAME when\
#    it exists: what that file sets wins (a variable given an empty value\
#    there is unset);\
#  - is the consumer <hostname>@NAME in the stream group, its heartbeat\
#    PREFIX:worker:<hostname>@NAME (--consumer, which wins over RAGQ_CONSUMER\
#    in either file): two workers never share a name, and an instance keeps\
#    its own across restarts.  Another name: systemctl edit ragq-worker@NAME,\
#    ExecStart= emptied, then ExecStart= with another --consumer;\
#  - shares the dynamic user (named after the unit's prefix, ragq-worker)\
#    and the local store in /var/lib/ragq with the others and with\
#    ragq-worker.service, so one ragq-ingest serves them all.\
# RAGQ_HEALTH_FILE, when wanted, goes in /etc/default/ragq-worker-NAME, a\
# path for each instance (e.g. /var/lib/ragq/worker-NAME.health: /var/lib/ragq\
# is the only place the sandbox lets it write that other processes see), never\
# in /etc/default/ragq-worker: a worker removes the file when it starts and\
# when it stops, so instances sharing one would remove each other's.\
# An upgrade of the package restarts the running instances with\
# ragq-worker.service; removing the package stops them.\

}

s/^Description=ragq worker: /Description=ragq worker %i: /
/^EnvironmentFile=\/etc\/default\/ragq-worker$/a\
EnvironmentFile=-/etc/default/ragq-worker-%i
s/^ExecStart=\/usr\/bin\/ragq-worker$/& --consumer=%H@%i/
