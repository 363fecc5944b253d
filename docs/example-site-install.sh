python3 -m venv .venv
.venv/bin/pip install -e ".[example,mysql]"   # [example,postgres] for PostgreSQL, [example] for SQLite
cd example_project
export DATABASE_URL=mysql://bounces:PASSWORD@127.0.0.1:3306/bounces   # your database
../.venv/bin/python manage.py migrate
../.venv/bin/python manage.py check
../.venv/bin/python manage.py bounce_postfix_config --user www-data --env DATABASE_URL
