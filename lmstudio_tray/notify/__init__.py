"""Desktop notifications: one Notifier interface, backends picked by capability, a pure policy."""

from lmstudio_tray.notify.base import LogNotifier, Message, Notifier, NotifyButton, RecordingNotifier, Urgency
from lmstudio_tray.notify.policy import Decision, NotificationPolicy
from lmstudio_tray.notify.service import NotificationService, attach_notifications

__all__ = [
    "Decision",
    "LogNotifier",
    "Message",
    "NotificationPolicy",
    "NotificationService",
    "Notifier",
    "NotifyButton",
    "RecordingNotifier",
    "Urgency",
    "attach_notifications",
]
