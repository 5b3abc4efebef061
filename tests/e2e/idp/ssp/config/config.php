<?php
// SimpleSAMLphp 1.19 (Debian's package) as the SAML IdP of Customs' e2e tests, served by `php -S`.
// Self-contained on purpose: Debian's /etc/simplesamlphp/config.php requires a secrets file only
// root and www-data can read. tests/e2e/conftest.py sets the environment variables read below.
$runtime = getenv('SSP_RUNTIME_DIR');      // temp dir made per test session: cert/, log/, data/, run/
if (!$runtime) {
    throw new Exception('SSP_RUNTIME_DIR is not set; start this IdP through the saml_idp fixture');
}
$config = [
    // A full URL: `php -S` serves the www directory at the root, not under /simplesaml/.
    'baseurlpath' => getenv('SSP_BASE_URL') ?: 'http://127.0.0.1:8080/',
    'certdir' => "$runtime/cert/",
    'loggingdir' => "$runtime/log/",
    'datadir' => "$runtime/data/",
    'tempdir' => "$runtime/run/",
    'metadatadir' => dirname(__DIR__) . '/metadata/',
    'metadata.sources' => [['type' => 'flatfile', 'directory' => dirname(__DIR__) . '/metadata']],

    'secretsalt' => 'customs-e2e-test-only-salt',
    'auth.adminpassword' => 'customs-e2e-test-only-admin',
    'admin.protectindexpage' => false,
    'admin.protectmetadata' => false,
    'admin.checkforupdates' => false,       // no outbound requests from tests
    'technicalcontact_name' => 'Customs e2e tests',
    'technicalcontact_email' => 'e2e@example.test',
    'timezone' => 'UTC',

    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'enable.adfs-idp' => false,
    'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true],
    'authproc.idp' => [],                   // no consent page, no attribute rewriting
    'authproc.sp' => [],

    // Plain http on loopback: a secure-only cookie would be dropped and the SSO state lost.
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'store.type' => 'phpsession',
    'session.phpsession.savepath' => "$runtime/run",
    'session.phpsession.httponly' => true,

    'showerrors' => true,
    'errorreporting' => false,
    'debug' => ['saml' => false, 'backtraces' => true, 'validatexml' => false],
    'logging.level' => SimpleSAML\Logger::INFO,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'statistics.out' => [],
];
