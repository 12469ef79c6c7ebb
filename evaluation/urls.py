app_name = "evaluation"
urlpatterns = []  # the evaluation pages land with issue 6
