"""twilio account: when its From numbers were last read

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('twilio_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('numbers_fetched_at', sa.DateTime(), nullable=True))

    # Accounts whose numbers were already read keep their cache instead of being read again.
    op.execute(
        'UPDATE twilio_accounts SET numbers_fetched_at = '
        '(SELECT MAX(fetched_at) FROM twilio_phone_numbers WHERE twilio_phone_numbers.account_id = twilio_accounts.id)'
    )


def downgrade():
    with op.batch_alter_table('twilio_accounts', schema=None) as batch_op:
        batch_op.drop_column('numbers_fetched_at')
