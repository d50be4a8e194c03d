from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "readerstudy.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from readerstudy.audit import receivers  # noqa: F401 (connects the signal receivers)
