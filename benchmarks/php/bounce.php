<?php
// The original recipe's Postfix pipe script, as the benchmarks' baseline.
//
// What the recipe did, and nothing more: read the message from standard input,
// then one UPDATE of the tracker row keyed on the envelope recipient's local part
// (the VERP address), through mysqli, autocommitted. Exit 0 when the UPDATE ran,
// 75 (EX_TEMPFAIL: Postfix keeps the message and retries) when the database could
// not be reached or the UPDATE failed. No classification, no history, no
// exactly-once: a redelivered message counts again.
//
// master.cf:  bounces unix - n n - 10 pipe
//               flags=F user=nobody argv=/usr/bin/php /path/bounce.php ${sender} ${recipient}
//
// The connection comes from the environment (the benchmark sets it; the recipe
// wrote it into the script): BOUNCE_DB_HOST, BOUNCE_DB_PORT, BOUNCE_DB_USER,
// BOUNCE_DB_PASSWORD, BOUNCE_DB_NAME, BOUNCE_DB_TABLE.

const EX_TEMPFAIL = 75;

$message = stream_get_contents(STDIN);
$recipient = $argv[count($argv) - 1] ?? '';
$at = strrpos($recipient, '@');
$local_part = strtolower($at === false ? $recipient : substr($recipient, 0, $at));

mysqli_report(MYSQLI_REPORT_OFF);
$db = @new mysqli(
    getenv('BOUNCE_DB_HOST') ?: '127.0.0.1',
    getenv('BOUNCE_DB_USER') ?: 'root',
    getenv('BOUNCE_DB_PASSWORD') ?: '',
    getenv('BOUNCE_DB_NAME') ?: 'bounce_tracker',
    (int) (getenv('BOUNCE_DB_PORT') ?: 3306)
);
if ($db->connect_errno) {
    fwrite(STDERR, "bounce.php: can't connect: {$db->connect_error}\n");
    exit(EX_TEMPFAIL);
}
$db->set_charset('utf8mb4');
$table = getenv('BOUNCE_DB_TABLE') ?: 'bounce_tracker_emailaddresstracker';
$ok = $db->query(
    "UPDATE `$table` SET bounce_count = bounce_count + 1, last_bounce3 = last_bounce2, "
    . "last_bounce2 = last_bounce, last_bounce = NOW() "
    . "WHERE encoded_from = '" . $db->real_escape_string($local_part) . "'"
);
if (!$ok) {
    fwrite(STDERR, "bounce.php: UPDATE failed: {$db->error}\n");
    exit(EX_TEMPFAIL);
}
$db->close();
exit(0);
