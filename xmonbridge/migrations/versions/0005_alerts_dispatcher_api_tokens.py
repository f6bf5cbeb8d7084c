"""alerts, dispatcher, api tokens

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 19:31:14.274941

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

FROM_COLUMNS = ('request_logs', 'simple_call_settings', 'sms_settings', 'simulated_messages')


def _widen_from_numbers(length):
    """Resize the From columns (an SMS sender may be an MG… Messaging Service SID).

    SQLite rebuilds each table; with foreign keys on, dropping the old settings table would
    cascade into its recipients, so they are off while it runs.
    """
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute('PRAGMA foreign_keys=OFF')
    for table in FROM_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('from_number', type_=sa.String(length=length),
                                  existing_type=sa.String(length=96 - length), existing_nullable=False)
    if sqlite:
        op.execute('PRAGMA foreign_keys=ON')


def upgrade():
    op.create_table('dispatcher_lease',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('acquired_at', sa.DateTime(), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('hint', sa.String(length=16), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_by_login', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_by_login', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('setting_type', sa.String(length=32), nullable=False),
    sa.Column('setting_id', sa.Integer(), nullable=False),
    sa.Column('setting_name', sa.String(length=128), nullable=False),
    sa.Column('notification_type', sa.String(length=32), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('host_address', sa.String(length=255), nullable=False),
    sa.Column('service', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('problem_id', sa.String(length=32), nullable=False),
    sa.Column('last_problem_id', sa.String(length=32), nullable=False),
    sa.Column('correlation_id', sa.String(length=32), nullable=False),
    sa.Column('event_time', sa.DateTime(), nullable=True),
    sa.Column('problem_alert_id', sa.Integer(), nullable=True),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('token_name', sa.String(length=128), nullable=False),
    sa.Column('repeats', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['problem_alert_id'], ['alerts.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_problem', ['host', 'service', 'correlation_id'], unique=False)
        batch_op.create_index('ix_alerts_problem_alert_id', ['problem_alert_id'], unique=False)
        batch_op.create_index('ix_alerts_setting', ['setting_type', 'setting_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_received_at'), ['received_at'], unique=False)

    op.create_table('alert_dedupe',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('claim', sa.String(length=32), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('alert_dedupe', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_dedupe_expires_at'), ['expires_at'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('alert_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('setting_type', sa.String(length=32), nullable=False),
    sa.Column('setting_id', sa.Integer(), nullable=False),
    sa.Column('setting_name', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('account_name', sa.String(length=128), nullable=False),
    sa.Column('from_number', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('ring_seconds', sa.Integer(), nullable=True),
    sa.Column('shortened_from', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['twilio_accounts.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_alert_id'), ['alert_id'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notification_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('user_name', sa.String(length=128), nullable=False),
    sa.Column('to_number', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('next_at', sa.DateTime(), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('final_status', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('check_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_check', ['check_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_notification_id'), ['notification_id'], unique=False)
        batch_op.create_index('ix_deliveries_queue', ['status', 'next_at'], unique=False)

    op.create_table('attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=False),
    sa.Column('next_retry_at', sa.DateTime(), nullable=True),
    sa.Column('callback_token', sa.String(length=64), nullable=False),
    sa.Column('final_status', sa.String(length=32), nullable=False),
    sa.Column('final_at', sa.DateTime(), nullable=True),
    sa.Column('answered_by', sa.String(length=32), nullable=False),
    sa.Column('duration', sa.Integer(), nullable=True),
    sa.Column('placed_by', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('callback_token')
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attempts_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attempts_sid'), ['sid'], unique=False)

    _widen_from_numbers(64)

    with op.batch_alter_table('twilio_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cps', sa.Integer(), server_default='1', nullable=False))



def downgrade():
    # Rebuilding twilio_accounts must not cascade into its numbers either.
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute('PRAGMA foreign_keys=OFF')
    with op.batch_alter_table('twilio_accounts', schema=None) as batch_op:
        batch_op.drop_column('cps')
    _widen_from_numbers(32)

    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attempts_sid'))
        batch_op.drop_index(batch_op.f('ix_attempts_delivery_id'))

    op.drop_table('attempts')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_queue')
        batch_op.drop_index(batch_op.f('ix_deliveries_notification_id'))
        batch_op.drop_index('ix_deliveries_check')

    op.drop_table('deliveries')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_alert_id'))

    op.drop_table('notifications')
    with op.batch_alter_table('alert_dedupe', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_dedupe_expires_at'))

    op.drop_table('alert_dedupe')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_received_at'))
        batch_op.drop_index('ix_alerts_problem')
        batch_op.drop_index('ix_alerts_problem_alert_id')
        batch_op.drop_index('ix_alerts_setting')

    op.drop_table('alerts')
    op.drop_table('api_tokens')
    op.drop_table('dispatcher_lease')
