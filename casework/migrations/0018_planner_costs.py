"""PostgreSQL: plan for data that is cached or on solid-state storage (issue 14).

With the default random_page_cost (4, tuned for spinning disks), PostgreSQL answers the
board's rights condition by reading the whole case table and hashing it (49 ms at
100,000 cases) rather than looking up the page's ~1,000 tasks' cases by key (12 ms): the
board's cost grew with the cases. 1.1 is the value PostgreSQL's documentation suggests
for SSDs. Set on the database (every later session) and on this one; a role that may not
alter the database leaves it to the administrator (README, "Production deployment").
"""

from django.db import migrations

SET = """
DO $$
BEGIN
    EXECUTE 'ALTER DATABASE ' || quote_ident(current_database()) || ' SET random_page_cost = 1.1';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'random_page_cost not set: the database owner may set it';
END $$;
SET random_page_cost = 1.1;
"""

RESET = """
DO $$
BEGIN
    EXECUTE 'ALTER DATABASE ' || quote_ident(current_database()) || ' RESET random_page_cost';
EXCEPTION WHEN insufficient_privilege THEN
    NULL;
END $$;
RESET random_page_cost;
"""


def planner_costs(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(SET)


def default_costs(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(RESET)


class Migration(migrations.Migration):
    dependencies = [("casework", "0017_list_indexes")]

    operations = [migrations.RunPython(planner_costs, default_costs)]
