<?php
// Runs a PHP executor: `main($in, $sdk)` if the code defines it, else the script as it is
// (input JSON on stdin and in $in, output JSON on stdout, as Enneo scripts expect).
require getenv('SDK');
if (getenv('SWITCHYARD_WARM')) {
    // Started ahead of its run: say so on the SDK channel, wait there for the code and the input
    // (one JSON line; the hub sends nothing else before the code's first call), write them.
    $go = fopen('php://fd/' . (int)getenv('SWITCHYARD_SDK_FD'), 'r+');
    fwrite($go, "ready\n");
    $line = fgets($go);
    if ($line === false) {
        exit(1);
    }
    $line = json_decode($line, true);
    file_put_contents(__DIR__ . '/main.php', $line['main']);
    file_put_contents(__DIR__ . '/input.json', $line['input']);
    unset($go, $line);
}
if (getenv('SWITCHYARD_PACKAGES')) {
    // The executor's installed packages, bound read-only into the run's root: loaded by
    // Composer's autoloader, and found as `vendor/autoload.php` beside main.php too.
    $vendor = getenv('SWITCHYARD_PACKAGES') . '/vendor';
    symlink($vendor, __DIR__ . '/vendor');
    require_once $vendor . '/autoload.php';
    unset($vendor);
}
$in = json_decode(file_get_contents(__DIR__ . '/input.json'), true);
require __DIR__ . '/main.php';
if (function_exists('main')) {
    switchyard_result(main($in, $sdk));
}
