<?php
// Test people of the SAML IdP; exampleauth:UserPass really checks the passwords.
$E = 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress';
$G = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/groups';
$config = [
    'admin' => ['core:AdminPassword'],
    'test-users' => [
        'exampleauth:UserPass',
        'alice:alice-pw' => [
            'uid' => ['alice'],
            $E => ['alice.saml@example.test'],
            $G => ['CN=Portal-Admins,OU=Groups,DC=corp,DC=test', 'CN=Staff,OU=Groups,DC=corp,DC=test'],
        ],
        'bob:bob-pw' => [
            'uid' => ['bob'],
            $E => ['bob.saml@example.test'],
            $G => ['CN=Staff,OU=Groups,DC=corp,DC=test'],
        ],
    ],
];
