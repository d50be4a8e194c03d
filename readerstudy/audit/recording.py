"""Recording audit events: the acting user comes from the request (``AuditActorMiddleware`` puts it in a
context variable for the request's duration), so model signals and services need not be handed it."""

from contextvars import ContextVar

from readerstudy.audit.models import AuditEvent

current_actor: ContextVar = ContextVar("audit_actor", default=None)


class AuditActorMiddleware:
    """Makes the request's authenticated user the actor of the events the request records."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        token = current_actor.set(user if user is not None and user.is_authenticated else None)
        try:
            return self.get_response(request)
        finally:
            current_actor.reset(token)


def record(action: str, obj, summary: str, before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """Append an event about ``obj`` (its public id when it has one, else its primary key)."""
    object_id = str(getattr(obj, "public_id", None) or obj.pk)
    return record_about(action, type(obj).__name__, object_id, summary, before, after)


def record_about(
    action: str, object_type: str, object_id: str, summary: str, before: dict | None = None, after: dict | None = None
) -> AuditEvent:
    """Append an event about something that has no row (``object_type``, ``object_id``), e.g. a refused case."""
    return AuditEvent.objects.create(
        actor=current_actor.get(),
        action=action,
        object_type=object_type[:50],
        object_id=object_id[:50],
        summary=summary[:300],
        before=before,
        after=after,
    )
