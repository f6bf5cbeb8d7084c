"""retention indexes

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:20:00.000000

With a year of rows, ログ filtered by kind and インシデント filtered by setting read newest
first through an index instead of sorting every matching row, and deleting an old alert finds
its call announcements and acknowledgements (by alert and by attempt) by key instead of reading both tables whole.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_setting')
        batch_op.create_index('ix_alerts_setting', ['setting_type', 'setting_id', 'received_at'], unique=False)
    with op.batch_alter_table('request_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_request_logs_kind')
        batch_op.create_index('ix_request_logs_kind_created_at', ['kind', 'created_at'], unique=False)
    with op.batch_alter_table('call_announcements', schema=None) as batch_op:
        batch_op.create_index('ix_call_announcements_alert_id', ['alert_id'], unique=False)
    with op.batch_alter_table('acknowledgements', schema=None) as batch_op:
        batch_op.create_index('ix_acknowledgements_alert_id', ['alert_id'], unique=False)
        batch_op.create_index('ix_acknowledgements_attempt_id', ['attempt_id'], unique=False)


def downgrade():
    with op.batch_alter_table('acknowledgements', schema=None) as batch_op:
        batch_op.drop_index('ix_acknowledgements_attempt_id')
        batch_op.drop_index('ix_acknowledgements_alert_id')
    with op.batch_alter_table('call_announcements', schema=None) as batch_op:
        batch_op.drop_index('ix_call_announcements_alert_id')
    with op.batch_alter_table('request_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_request_logs_kind_created_at')
        batch_op.create_index('ix_request_logs_kind', ['kind'], unique=False)
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_setting')
        batch_op.create_index('ix_alerts_setting', ['setting_type', 'setting_id'], unique=False)
