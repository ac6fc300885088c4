<?php
// Switchyard SDK for PHP executors. Every call goes to the hub over the socket inherited as file
// descriptor SWITCHYARD_SDK_FD (it has no name, so no other process can reach it): HTTP requests are made by the hub (egress policy, secret injection),
// storage is the organization's key-value store, secrets come from the hub's encrypted store.

// Loading it twice (the runner, then a script's own `require getenv('SDK')`) is harmless.
if (!class_exists('SwitchyardSdk', false)) {
    class SwitchyardSdkError extends Exception {}

    function switchyard_rpc(string $op, array $args) {
        static $sock = null;
        if ($sock === null) {
            $sock = @fopen('php://fd/' . (int)getenv('SWITCHYARD_SDK_FD'), 'r+');
            if (!$sock) {
                throw new SwitchyardSdkError('cannot reach the hub: the SDK channel is not open');
            }
        }
        $args['op'] = $op;
        fwrite($sock, json_encode($args) . "\n");
        $line = fgets($sock);
        if ($line === false) {
            throw new SwitchyardSdkError('the hub closed the SDK channel');
        }
        $answer = json_decode($line, true);
        if (empty($answer['ok'])) {
            throw new SwitchyardSdkError((string)($answer['error'] ?? 'unknown error'));
        }
        return $answer['value'] ?? null;
    }

    class SwitchyardStorage {
        public function get(string $key) { return switchyard_rpc('storage.get', ['key' => $key]); }
        public function set(string $key, $value) { switchyard_rpc('storage.set', ['key' => $key, 'value' => $value]); }
        public function delete(string $key) { return switchyard_rpc('storage.delete', ['key' => $key]); }
    }

    class SwitchyardSdk {
        public SwitchyardStorage $storage;
        public function __construct() { $this->storage = new SwitchyardStorage(); }
        /** @return array {status, headers, body, json} */
        public function http(string $method, string $url, array $options = []) {
            return switchyard_rpc('http', ['method' => $method, 'url' => $url,
                'headers' => $options['headers'] ?? null, 'query' => $options['query'] ?? null,
                'json' => $options['json'] ?? null, 'body' => $options['body'] ?? null]);
        }
        public function secret(string $name) { return switchyard_rpc('secret', ['name' => $name]); }
        public function call(string $udf, $input = null) { return switchyard_rpc('call', ['executor' => $udf, 'input' => $input]); }
        // The hub's own API as this executor's organization, with its `api_role`: `$path` is under
        // /v1/orgs/{org} (e.g. "/events"). Returns ['status' => …, 'body' => …].
        public function api(string $method, string $path, $body = null) { return switchyard_rpc('api', ['method' => $method, 'path' => $path, 'body' => $body]); }
        public function log(...$parts) {
            switchyard_rpc('log', ['message' => implode(' ', array_map(fn($p) => is_string($p) ? $p : json_encode($p), $parts))]);
        }
    }

    function switchyard_result($value) { switchyard_rpc('result', ['value' => $value]); }
}

$sdk = new SwitchyardSdk();
