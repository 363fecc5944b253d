"""For the benchmarks only (``benchmarks/pipe.py``): not part of the example site.

``benchsite.settings`` is the example site's settings plus this app, whose one command
``bump_bounce_count`` is the floor ``handle_bounce`` is measured against in the same
site; ``benchsite.pipe_settings`` is what a site can do for its pipe itself: the same
settings with only the apps the pipe needs.
"""
