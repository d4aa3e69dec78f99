"""Imported only by the build's forkserver, first: from then on it and every worker it forks ignore SIGINT.

A terminal's Ctrl-C goes to the whole process group. The parent (synth.build.run_build) alone turns it into
a stop and then ends the workers; a worker that took the signal itself would die with a traceback, or, in
the middle of its start-up, leave the parent waiting on a broken pool. The forkserver records its signal
handlers after importing its preload modules and gives them to every child, so ignoring SIGINT here covers
workers from their first instruction (synth.build._worker_init sets it again for other start methods)."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
