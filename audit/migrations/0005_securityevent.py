"""Security events, append-only like the audit trail (the function of migration 0002)."""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0004_operator_decides_risk_reviews'),
    ]

    operations = [
        migrations.CreateModel(
            name='SecurityEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('auth_failed', 'API authentication failed'), ('scope_denied', 'API key lacks the scope'), ('throttled', 'API throttled'), ('card_data_refused', 'card number refused'), ('webhook_signature_invalid', 'webhook signature invalid'), ('admin_login_failed', 'admin sign-in failed'), ('admin_login_throttled', 'admin sign-in throttled'), ('risk_rejected', 'risk check rejected an order')], max_length=32)),
                ('actor', models.CharField(blank=True, default='', max_length=150)),
                ('ip', models.GenericIPAddressField(blank=True, null=True)),
                ('path', models.CharField(blank=True, default='', max_length=255)),
                ('detail', models.TextField(blank=True, default='')),
                ('created_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
            ],
            options={
                'indexes': [models.Index(fields=['created_at'], name='security_event_time_idx'), models.Index(fields=['kind', 'created_at'], name='security_event_kind_idx'), models.Index(fields=['ip', 'created_at'], name='security_event_ip_idx')],
            },
        ),
        migrations.RunSQL(
            """
            CREATE TRIGGER security_event_append_only BEFORE UPDATE OR DELETE ON audit_securityevent
                FOR EACH ROW EXECUTE FUNCTION audit_append_only();
            CREATE TRIGGER security_event_no_truncate BEFORE TRUNCATE ON audit_securityevent
                FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
            """,
            """
            DROP TRIGGER security_event_no_truncate ON audit_securityevent;
            DROP TRIGGER security_event_append_only ON audit_securityevent;
            """,
        ),
    ]
