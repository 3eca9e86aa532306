# Extract the ```sql blocks of a Markdown page into a pg_regress input, so
# that every documented example runs in the tests.  Blocks fenced with any
# other info string (for instance "sql norun") are left out.
BEGIN { print "-- generated from the documentation; edit the .md page instead"; print "\\set SHOW_CONTEXT never" }
/^```sql[ \t]*$/ { inside = 1; next }
/^```/ && inside { inside = 0; print ""; next }
inside { print }
