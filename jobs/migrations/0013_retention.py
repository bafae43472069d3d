from django.db import migrations, models

NAME = "prune expired jobs"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "jobs.tasks.prune_expired_jobs", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0012_client_keys"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.AddField(model_name="job", name="pruned_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddIndex(model_name="job", index=models.Index(fields=["finished_at"], name="job_finished_at")),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["pruned_at"], condition=models.Q(pruned_at__isnull=False), name="job_pruned"),
        ),
        migrations.AddIndex(
            model_name="outcomecount", index=models.Index(fields=["job"], name="outcome_count_job")
        ),
        migrations.RunPython(create_schedule, delete_schedule),
    ]
