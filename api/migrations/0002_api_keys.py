"""A client may hold several keys (a rotation's overlap), each with its scopes. Existing keys move over with every
scope, so no storefront loses access. Irreversible: a client has one key column no more."""

import django.contrib.postgres.fields
import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models

COPY_KEYS = """
INSERT INTO api_apikey (client_id, prefix, key_hash, scopes, created_at, revoked_at)
SELECT id, key_prefix, key_hash, ARRAY['read', 'write', 'refunds', 'payouts'], created_at, NULL FROM api_apiclient
"""


class Migration(migrations.Migration):

    dependencies = [
        ('api', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('prefix', models.CharField(max_length=16)),
                ('key_hash', models.CharField(max_length=64, unique=True)),
                ('scopes', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(choices=[('read', 'read payments, orders, refunds, payouts and balances'), ('write', 'create payments and checkouts'), ('refunds', 'refund orders'), ('payouts', 'release funds, pay sellers out, change their payout settings')], max_length=16), size=None)),
                ('created_at', models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('client', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='keys', to='api.apiclient')),
                ('replaced_by', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='api.apikey')),
            ],
            options={
                'verbose_name': 'API key',
                'constraints': [models.CheckConstraint(condition=models.Q(('scopes__contained_by', ['read', 'write', 'refunds', 'payouts']), models.Q(('scopes', []), _negated=True)), name='api_key_scopes_known')],
            },
        ),
        migrations.RunSQL(COPY_KEYS),  # irreversible: the keys' hashes have nowhere to go back to
        migrations.RemoveField(
            model_name='apiclient',
            name='key_hash',
        ),
        migrations.RemoveField(
            model_name='apiclient',
            name='key_prefix',
        ),
    ]
