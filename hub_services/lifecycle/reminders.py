"""Reminders before an automatic shutdown or a security restart: the message and the senders.

The lifecycle service calls its ``reminder_hook`` (a Callable trait, awaited if it returns an
awaitable) with one :class:`Reminder`; :class:`SMTPReminder` is the built-in hook that mails
the workspace's owner. The hub's home page shows the same reminder as a banner whatever the
hook does.
"""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from traitlets import Integer, Unicode
from traitlets.config import LoggingConfigurable

__all__ = ["Reminder", "SMTPReminder"]


@dataclass(frozen=True)
class Reminder:
    """``event`` ("shutdown" or "restart") of ``user``'s ``workspace`` at ``at`` (UTC)."""

    user: str
    workspace: str
    event: str
    at: datetime
    reason: str
    hub_url: str = ""

    @property
    def subject(self) -> str:
        verb = "will stop" if self.event == "shutdown" else "will restart"
        return f"Workspace {self.workspace} {verb} at {self.at:%Y-%m-%d %H:%M} UTC"

    @property
    def body(self) -> str:
        what = (
            "stop (your files in /data stay)"
            if self.event == "shutdown"
            else "restart (a security restart every 30 days; it comes back with its state)"
        )
        lines = [
            f"Hello {self.user},",
            "",
            f"your workspace {self.workspace} will {what} at {self.at:%Y-%m-%d %H:%M} UTC.",
            f"Why: {self.reason}.",
            "",
            "To keep it running longer, set 'keep running until' for it on the hub's home page"
            + (f" ({self.hub_url})" if self.hub_url else "")
            + " or change its shutdown timer.",
        ]
        return "\n".join(lines) + "\n"


class SMTPReminder(LoggingConfigurable):
    """Mail a reminder to the workspace owner through an SMTP server (no TLS, no login: a
    site relay such as the local MTA). Use as ``reminder_hook``."""

    host = Unicode("localhost", help="SMTP server host, e.g. mail.example.org").tag(config=True)
    port = Integer(25, help="SMTP server port, e.g. 25 or 1025").tag(config=True)
    sender = Unicode(
        "benchhub@localhost", help="From address of reminders, e.g. benchhub@example.org"
    ).tag(config=True)
    to_template = Unicode(
        "{user}@localhost",
        help="The owner's address from their hub user name, e.g. {user}@example.org",
    ).tag(config=True)
    timeout = Integer(30, help="Seconds to wait for the SMTP server.").tag(config=True)

    def message(self, reminder: Reminder) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = self.to_template.format(user=reminder.user)
        message["Subject"] = reminder.subject
        message.set_content(reminder.body)
        return message

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.send_message(message)

    async def __call__(self, reminder: Reminder) -> None:
        message = self.message(reminder)
        await asyncio.to_thread(self._send, message)
        self.log.info("reminder mailed to %s: %s", message["To"], reminder.subject)
