from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "glasshouse.reports"
    label = "reports"
    verbose_name = "Monitoring reports and classification"

    def ready(self) -> None:
        # New applications and sites met by the rollups are classified by this app's rules.
        from glasshouse.activity.rollups import NEW_SUBJECT_RESOLVERS
        from glasshouse.reports.classify import resolve_new_subjects

        if resolve_new_subjects not in NEW_SUBJECT_RESOLVERS:
            NEW_SUBJECT_RESOLVERS.append(resolve_new_subjects)
