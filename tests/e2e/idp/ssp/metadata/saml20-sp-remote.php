<?php
// Customs as seen by the IdP: allauth's SAML app "localsaml", served by pytest-django's live server.
// RP_BASE must equal the live server URL exactly (127.0.0.1 is not localhost, the port counts).
$rp = rtrim(getenv('RP_BASE') ?: 'http://127.0.0.1:8001', '/');
$metadata["$rp/accounts/saml/localsaml/metadata/"] = [
    'AssertionConsumerService' => "$rp/accounts/saml/localsaml/acs/",
    'SingleLogoutService' => "$rp/accounts/saml/localsaml/sls/",
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    'simplesaml.nameidattribute' => 'uid',
    'simplesaml.attributes' => true,
    'attributes.NameFormat' => 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
    'saml20.sign.assertion' => true,
    'saml20.sign.response' => true,
];
