"""The demo: a content platform's background work on roadie's five queues.

`roadie demo` runs a platform day; `roadie.demo:app` is the App (for `roadie worker --app`,
`roadie dashboard --app`); the tasks are in `roadie.demo.tasks`, the generated inputs in
`roadie.demo.world`, the SMTP relay in `roadie.demo.smtp`, the command in `roadie.demo.run`.
"""

from roadie.demo.tasks import app

__all__ = ["app"]
