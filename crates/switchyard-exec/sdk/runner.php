<?php
// Runs a PHP executor: `main($in, $sdk)` if the code defines it, else the script as it is
// (input JSON on stdin and in $in, output JSON on stdout, as Enneo scripts expect).
require getenv('SDK');
$in = json_decode(file_get_contents(__DIR__ . '/input.json'), true);
require __DIR__ . '/main.php';
if (function_exists('main')) {
    switchyard_result(main($in, $sdk));
}
