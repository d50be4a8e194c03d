from django.apps import AppConfig


class StudiesConfig(AppConfig):
    name = "readerstudy.studies"
    verbose_name = "Reader studies"

    def ready(self):
        """Answer the predictions app's question of which lesions readers need first."""
        from readerstudy.studies import receivers  # noqa: F401 (connects them)
