# The chat page (web/) in a real browser: headless Debian chromium driven by
# python3-selenium asks a question on the page served by `scripts/demo
# --serve`, sees the answer grow before `done`, then the job's result and its
# sources; presses Stop on a slow job and sees canceled; sees a refused query's
# error.  The cases are tests/web/browser.py, which prints TAP; screenshots go
# to tests/web/out/.  A plain TAP file (no Test::Nginx blocks): it runs the
# same under both runners.
use strict;
use warnings;

my $root = $ENV{RAGQ_ROOT} || '.';
exec '/usr/bin/python3', "$root/tests/web/browser.py"
  or die "cannot run tests/web/browser.py: $!";
