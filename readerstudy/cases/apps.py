from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "readerstudy.cases"
    verbose_name = "Cases"
