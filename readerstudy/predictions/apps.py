from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    name = "readerstudy.predictions"
    verbose_name = "Predictions"

    def ready(self):
        """Predict each newly imported case with the active model version."""
        from readerstudy.cases.signals import case_imported
        from readerstudy.predictions.dispatch import predict_case

        case_imported.connect(
            lambda sender, case, **kwargs: predict_case(case), weak=False, dispatch_uid="predict-imported-case"
        )
