from __future__ import annotations

from django.urls import path

from registries import (
    access_views,
    base_image_pages,
    base_image_views,
    credential_views,
    evidence_views,
    hygiene_views,
    offboarding_views,
    posture_views,
    review_views,
    views,
)

app_name = "registries"

urlpatterns = [
    path("registries/", views.registry_list, name="list"),
    path("registries/token-bundle.pem", views.token_bundle, name="token_bundle"),
    path("registries/add/", views.registry_add, name="add"),
    path("registries/check/", views.registry_check_new, name="check_new"),
    path("registries/<int:registry_id>/", views.registry_detail, name="detail"),
    path("registries/<int:registry_id>/edit/", views.registry_edit, name="edit"),
    path("registries/<int:registry_id>/delete/", views.registry_delete, name="delete"),
    path("registries/<int:registry_id>/check/", views.registry_check, name="check"),
    path("registries/<int:registry_id>/sync/", views.registry_sync, name="sync"),
    path("registries/<int:registry_id>/runs/", views.registry_runs, name="runs"),
    path("registries/<int:registry_id>/reconcile/", views.registry_reconcile, name="reconcile"),
    path("registries/<int:registry_id>/links/", views.principal_link_add, name="principal_link_add"),
    path(
        "registries/<int:registry_id>/links/<int:link_id>/delete/",
        views.principal_link_delete,
        name="principal_link_delete",
    ),
    path(
        "registries/<int:registry_id>/reconcile/apply/",
        views.registry_reconcile_apply,
        name="reconcile_apply",
    ),
    path(
        "registries/<int:registry_id>/notifications/rotate/",
        views.registry_rotate_webhook_secret,
        name="rotate_webhook_secret",
    ),
    path("registries/<int:registry_id>/replicas/", views.replica_add, name="replica_add"),
    path(
        "registries/<int:registry_id>/replicas/<int:replica_id>/delete/",
        views.replica_delete,
        name="replica_delete",
    ),
    path("registries/credentials/", credential_views.credential_list, name="credentials"),
    path("findings/dashboard/", hygiene_views.findings_dashboard, name="findings_dashboard"),
    path(
        "registries/credentials/export.csv",
        credential_views.credential_export,
        {"fmt": "csv"},
        name="credentials_export_csv",
    ),
    path(
        "registries/credentials/export.json",
        credential_views.credential_export,
        {"fmt": "json"},
        name="credentials_export_json",
    ),
    path("repositories/", views.repository_list, name="repositories"),
    path("repositories/<int:repository_id>/", views.repository_detail, name="repository"),
    # Digests hold a colon but never a slash, so the default str converter takes them whole.
    path("repositories/<int:repository_id>/artifacts/<str:digest>/", views.artifact_detail, name="artifact"),
    # The catalog for developers and the Dockerfile box (registries/base_image_pages.py).
    path("base-images/", base_image_pages.base_image_list, name="base_images"),
    path("base-images/check/", base_image_pages.base_image_check, name="base_image_check"),
    path("base-images/<int:base_image_id>/", base_image_pages.base_image_detail, name="base_image"),
    # Keeping the catalog: admins' pages (registries/base_image_views.py).
    path("base-images/manage/", base_image_views.base_image_manage, name="base_image_manage"),
    path("base-images/manage/add/", base_image_views.base_image_add, name="base_image_add"),
    path("base-images/manage/export.yaml", base_image_views.base_image_export, name="base_image_export"),
    path(
        "base-images/manage/<int:base_image_id>/",
        base_image_views.base_image_edit,
        name="base_image_edit",
    ),
    path(
        "base-images/manage/<int:base_image_id>/delete/",
        base_image_views.base_image_delete,
        name="base_image_delete",
    ),
    path(
        "base-images/manage/<int:base_image_id>/mirrors/",
        base_image_views.base_image_mirror_add,
        name="base_image_mirror_add",
    ),
    path(
        "base-images/manage/<int:base_image_id>/mirrors/<int:mirror_id>/delete/",
        base_image_views.base_image_mirror_delete,
        name="base_image_mirror_delete",
    ),
    path(
        "base-images/manage/<int:base_image_id>/upstream/",
        base_image_views.base_image_upstream,
        name="base_image_upstream",
    ),
    # Access rules, the explorer, "my access" and the report (registries/access_views.py).
    path("access/rules/", access_views.rule_list, name="rules"),
    path("access/rules/add/", access_views.rule_add, name="rule_add"),
    path("access/rules/preview/", access_views.rule_preview, name="rule_preview"),
    path("access/rules/<int:rule_id>/", access_views.rule_detail, name="rule_detail"),
    path("access/rules/<int:rule_id>/edit/", access_views.rule_edit, name="rule_edit"),
    path("access/rules/<int:rule_id>/delete/", access_views.rule_delete, name="rule_delete"),
    path("access/explore/", access_views.explore, name="explore"),
    path("access/mine/", access_views.my_access, name="my_access"),
    path("access/report.csv", access_views.access_report, name="access_report"),
    path("evidence/", evidence_views.evidence_page, name="evidence"),
    path("evidence/bundle.zip", evidence_views.evidence_bundle, name="evidence_bundle"),
    # Offboarding: the plan, its run and the reviewer's report (registries/offboarding_views.py).
    path("offboarding/", offboarding_views.offboarding_index, name="offboardings"),
    path("offboarding/people/<int:user_id>/", offboarding_views.offboarding_plan, name="offboarding_plan"),
    path("offboarding/<int:offboarding_id>/", offboarding_views.offboarding_detail, name="offboarding"),
    path(
        "offboarding/<int:offboarding_id>/progress/",
        offboarding_views.offboarding_progress,
        name="offboarding_progress",
    ),
    path(
        "offboarding/<int:offboarding_id>/confirm/",
        offboarding_views.offboarding_confirm,
        name="offboarding_confirm",
    ),
    path(
        "offboarding/<int:offboarding_id>/cancel/",
        offboarding_views.offboarding_cancel,
        name="offboarding_cancel",
    ),
    path(
        "offboarding/<int:offboarding_id>/report/",
        offboarding_views.offboarding_report_page,
        name="offboarding_report",
    ),
    path(
        "offboarding/<int:offboarding_id>/report.csv",
        offboarding_views.offboarding_report_csv,
        name="offboarding_report_csv",
    ),
    # Access review campaigns (registries/review_views.py).
    path("access/reviews/", review_views.campaign_list, name="reviews"),
    path("access/reviews/add/", review_views.campaign_add, name="review_add"),
    path("access/reviews/mine/", review_views.my_reviews, name="my_reviews"),
    path("access/reviews/<int:campaign_id>/", review_views.campaign_detail, name="review"),
    path("access/reviews/<int:campaign_id>/open/", review_views.campaign_open, name="review_open"),
    path("access/reviews/<int:campaign_id>/decide/", review_views.campaign_decide, name="review_decide"),
    path("access/reviews/<int:campaign_id>/close/", review_views.campaign_close, name="review_close"),
    path("access/reviews/<int:campaign_id>/apply/", review_views.campaign_apply, name="review_apply"),
    path("access/reviews/<int:campaign_id>/report/", review_views.campaign_report, name="review_report"),
    path(
        "access/reviews/<int:campaign_id>/report.csv",
        review_views.campaign_report_csv,
        name="review_report_csv",
    ),
    path(
        "access/reviews/<int:campaign_id>/report.pdf",
        review_views.campaign_report_pdf,
        name="review_report_pdf",
    ),
    # Posture: every registry's score and failing checks, and one registry's (registries/posture_views.py).
    path("posture/", posture_views.posture_overview, name="posture"),
    path("registries/<int:registry_id>/posture/", posture_views.registry_posture, name="registry_posture"),
]
